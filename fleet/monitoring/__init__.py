"""Monitoring from the stack outputs: Prometheus service discovery, scrape jobs and the seed fleet's alerts
(`python -m fleet monitoring`)."""
