"""pilot-fleet policy rules, importable without starting a policy pack server."""
