"""pilot-fleet: the Pulumi program. Thin on purpose: load and validate config, declare the fleet, export outputs."""

import pulumi

from fleet.config import FleetConfigError, load_from_pulumi
from fleet.stack import build_fleet, export_outputs

try:
    config = load_from_pulumi()
except FleetConfigError as error:
    raise pulumi.RunError(f"invalid stack configuration:\n{error}") from None

export_outputs(build_fleet(config))
