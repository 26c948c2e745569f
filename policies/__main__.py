"""The pilot-fleet policy pack. Builds the PolicyPack only: constructing it starts the analyzer's gRPC server,
prints its port and blocks, exactly as `pulumi preview --policy-pack policies` expects."""

import sys
from pathlib import Path

# The rules read the fleet's facts (machine types, ports, metadata keys) from the repository's `fleet` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleet_policies.pack import PACK_NAME, POLICIES
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
