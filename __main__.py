"""pilot-fleet: the Pulumi program. Thin on purpose: load and validate config, declare the fleet, export outputs."""

import pulumi

from fleet.components.stack import build_fleet, export_outputs
from fleet.config.model import FleetConfigError
from fleet.config.pulumi_source import load_from_pulumi

try:
    config = load_from_pulumi()
except FleetConfigError as error:
    raise pulumi.RunError(f"invalid stack configuration:\n{error}") from None

export_outputs(build_fleet(config))
