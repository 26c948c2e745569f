"""rendezvous-keeps-its-registry: no VM relies on `-standby` replication to carry the registry through a failover.

The public rendezvous has no way to set the replication token a standby needs (PILOT_FACTS: a `-standby` holds 0
nodes while its primary holds 3), so a promoted standby starts with an empty registry and every agent registers
again as a new identity, at 10 a minute per source IP. The fleet's failover moves the store disk instead (a regional
disk, `rendezvous.failoverZone`); a VM whose metadata (any VM kind, or a group's configs) asks for `-standby`
(`pilot-standby-of`) is a violation.
"""

from __future__ import annotations

from pulumi_policy import ReportViolation, StackValidationArgs, StackValidationPolicy

from . import facts as pilot
from .gce import NESTED_METADATA, VM_TYPES, metadata_of


def _keeps_registry(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for resource in args.resources:
        if resource.resource_type not in (*VM_TYPES, *NESTED_METADATA):
            continue
        metadata = metadata_of(resource.resource_type, resource.props)
        if pilot.MetadataKey.STANDBY_OF in metadata:
            report_violation(
                f"{resource.name} sets {pilot.MetadataKey.STANDBY_OF}: a -standby rendezvous never receives the "
                "registry (the public rendezvous cannot replicate), so a failover to it would start with an empty "
                "registry and every agent would register again as a new identity. Keep the store on a regional "
                "disk (rendezvous.failoverZone) and fail over with rendezvous.activeZone.", resource.urn)


rendezvous_keeps_its_registry = StackValidationPolicy(
    name="rendezvous-keeps-its-registry",
    description="No VM relies on -standby replication (pilot-standby-of): the failover moves the registry's store "
                "disk instead.",
    validate=_keeps_registry,
)
