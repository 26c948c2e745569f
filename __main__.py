"""pilot-fleet: the Pulumi program. Thin on purpose: load and validate config, declare the fleet, export outputs."""

import pulumi

from fleet.components.fleet import Fleet
from fleet.config.model import FleetConfigError
from fleet.config.pulumi_source import load_from_pulumi
from fleet.facts.pilot import PROJECT_NAME
from fleet.facts.tables import FactsTableError

try:
    config = load_from_pulumi()
    fleet = Fleet(PROJECT_NAME, config)
except FleetConfigError as error:
    raise pulumi.RunError(f"invalid stack configuration:\n{error}") from None
except FactsTableError as error:
    raise pulumi.RunError(f"invalid facts table: {error}") from None

for name, value in fleet.outputs.exports().items():
    pulumi.export(name, value)
