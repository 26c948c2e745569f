"""The pilot-fleet policy pack. Builds the PolicyPack only: constructing it starts the analyzer's gRPC server,
prints its port and blocks, exactly as `pulumi preview --policy-pack policies` expects."""

# Self-contained: the rules read the fleet's facts (machine types, ports, metadata keys, the memory budget) from
# fleet_policies/facts.py, generated from the fleet's own modules (python -m fleet.generators.policy_facts) and kept in
# step by a test; nothing here reaches into the repository, so `pulumi policy publish` can upload this folder alone.
from fleet_policies.pack import PACK_NAME, POLICIES
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
