"""pilot-fleet: the Pulumi program. Thin on purpose: load and validate config, declare the fleet, export outputs."""

import pulumi

from fleet.components.fleet import Fleet
from fleet.config.model import FleetConfigError
from fleet.config.pulumi_source import load_from_pulumi
from fleet.facts.pilot import PROJECT_NAME

try:
    config = load_from_pulumi()
except FleetConfigError as error:
    raise pulumi.RunError(f"invalid stack configuration:\n{error}") from None

for name, value in Fleet(PROJECT_NAME, config).outputs.exports().items():
    pulumi.export(name, value)
