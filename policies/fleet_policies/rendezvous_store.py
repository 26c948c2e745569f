"""rendezvous-keeps-its-registry: no VM relies on `-standby` replication to carry the registry through a failover.
rendezvous-store-snapshots: the rendezvous' store disk has a snapshot schedule (its loss costs a snapshot, not every
identity).

The public rendezvous has no way to set the replication token a standby needs (docs/pilot-facts.md: a `-standby`
holds 0 nodes while its primary holds 3), so a promoted standby starts with an empty registry and every agent registers
again as a new identity, at 10 a minute per source IP. The fleet's failover moves the store disk instead (a regional
disk, `rendezvous.failoverZone`); a VM whose metadata (any VM kind, or a group's configs) asks for `-standby`
(`pilot-standby-of`) is a violation.
"""

from __future__ import annotations

from collections.abc import Mapping

from pulumi_policy import PolicyResource, ReportViolation, StackValidationArgs, StackValidationPolicy

from . import facts as pilot
from .gce import DISK, INSTANCE, NESTED_METADATA, REGION_DISK, VM_TYPES
from .preview import Plain
from .vms import effective_vms

SNAPSHOTS = "rendezvous-store-snapshots"
RESOURCE_POLICY = "gcp:compute/resourcePolicy:ResourcePolicy"
ATTACHMENTS = ("gcp:compute/diskResourcePolicyAttachment:DiskResourcePolicyAttachment",
               "gcp:compute/regionDiskResourcePolicyAttachment:RegionDiskResourcePolicyAttachment")


def _keeps_registry(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for resource in args.resources:
        if resource.resource_type not in (*VM_TYPES, *NESTED_METADATA):
            continue
        metadata, _ = Plain.of(resource).metadata()  # an unknown map or value: preview-unknowns says so
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


def _store_disks(resource: PolicyResource) -> list[PolicyResource]:
    """The disks a rendezvous VM takes as its store (attached as the store device), found by reference: the disks
    among its dependencies, narrowed to the store device's source where that is known."""
    disks = [d for d in resource.dependencies if d.resource_type in (DISK, REGION_DISK)]
    attached = resource.props.get("attachedDisks")
    sources = {str(a.get("source")) for a in attached if isinstance(a, Mapping)
               and a.get("deviceName") == pilot.STORE_DEVICE} if isinstance(attached, list) else set()
    named = [d for d in disks if str(d.props.get("selfLink")) in sources]
    return named or disks


def _scheduled(disk: PolicyResource, resources: list[PolicyResource]) -> bool:
    """A snapshot schedule applies to DISK: one named on the disk itself, or an attachment that references both the
    disk and a resource policy with a snapshot schedule."""
    if disk.props.get("resourcePolicies"):
        return True
    for attachment in resources:
        if attachment.resource_type not in ATTACHMENTS:
            continue
        uses = {d.urn for d in attachment.dependencies}
        if disk.urn in uses and any(d.resource_type == RESOURCE_POLICY and d.props.get("snapshotSchedulePolicy")
                                    for d in attachment.dependencies):
            return True
    return False


def _store_snapshots(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    instances = {r.urn: r for r in args.resources if r.resource_type == INSTANCE}
    for vm in effective_vms(list(instances.values())):
        if vm.unknown_for(SNAPSHOTS) or vm.role != pilot.ROLE_RENDEZVOUS:
            continue  # a value it needs is not known at preview: preview-unknowns names it
        resource = instances[vm.urn]
        for disk in _store_disks(resource):
            if not _scheduled(disk, args.resources):
                report_violation(
                    f"{disk.name}, the store disk of the rendezvous {resource.name}, has no snapshot schedule: losing "
                    "the disk would lose the registry, and every agent would register again as a new identity, at "
                    "the registry's rate limit. Attach a resource policy with a snapshot schedule "
                    "(rendezvous.storeSnapshots).", disk.urn)


rendezvous_store_snapshots = StackValidationPolicy(
    name=SNAPSHOTS,
    description="The rendezvous' store disk has a snapshot schedule (a resource policy attached to it).",
    validate=_store_snapshots,
)
