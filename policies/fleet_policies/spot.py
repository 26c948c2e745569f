"""Spot VMs (README "Spot swarms"): a preemption stops a VM with 30 s notice, and what brings it back (its group)
brings back its disks only where the stack keeps them. A spot swarm VM must keep its agents' identities on a disk
that outlives the VM, or every preemption comes back as new identities at the registry's rate limit (hours per VM).
And an advisory: a fleet whose every swarm VM is spot has no floor when a zone's Spot capacity is reclaimed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from . import facts as pilot
from .advisory import ADVISORY
from .gce import INSTANCE, INSTANCE_FROM_MACHINE_IMAGE, INSTANCE_FROM_TEMPLATE, metadata_value
from .pools import KEEP_STATE, state_problems
from .preview import UNKNOWN, Plain
from .vms import EffectiveVm, effective_vms, group_vms

SPOT_KEEPS = "spot-keeps-identities"
INSTANCE_KINDS = (INSTANCE, INSTANCE_FROM_TEMPLATE, INSTANCE_FROM_MACHINE_IMAGE)


def is_spot(props: Mapping[str, Any]) -> bool:
    """A Spot (or legacy preemptible) VM by its scheduling."""
    scheduling = props.get("scheduling")
    if not isinstance(scheduling, Mapping):
        return False
    return str(scheduling.get("provisioningModel") or "").upper() == "SPOT" or scheduling.get("preemptible") is True


def _instance_problem(vm: EffectiveVm) -> str | None:
    """Where a stand-alone spot VM's agent state would not outlive it: on the boot disk, or on a disk it does not
    attach under that name."""
    device = metadata_value(vm.metadata, pilot.MetadataKey.STATE_DEVICE)
    if not device:
        return (f"sets no {pilot.MetadataKey.STATE_DEVICE}: its agents' identities live on the boot disk, which a "
                "replacement after a preemption does not keep")
    attached = [d for d in vm.props.get("attachedDisks") or [] if isinstance(d, Mapping)]
    if not any(d.get("deviceName") == device for d in attached):
        return f"attaches no disk named {device} ({pilot.MetadataKey.STATE_DEVICE}) for its agents' identities"
    return None


def _spot_keeps(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for vm in effective_vms(args.resources):
        if vm.kind in INSTANCE_KINDS and vm.role == pilot.ROLE_SWARM and is_spot(vm.props) \
                and not vm.unknown_for(KEEP_STATE):
            problem = _instance_problem(vm)
            if problem:
                report_violation(f"spot swarm VM {vm.name} {problem}.", vm.urn)
    for vms in group_vms(args.resources):  # by reference: the group's template, each version's
        if vms.vm.role == pilot.ROLE_SWARM and is_spot(vms.vm.props) and not vms.vm.unknown_for(KEEP_STATE):
            for problem in state_problems(Plain.of(vms.group).props, {**vms.vm.props, "metadata": vms.vm.metadata}):
                report_violation(f"spot swarm instance group {vms.group.name} {problem}: every preemption would "
                                 "come back as new identities.", vms.group.urn)


spot_keeps_identities = StackValidationPolicy(
    name=SPOT_KEEPS,
    description="A spot swarm VM keeps its agents' identities on a disk that outlives the VM: a stand-alone one on "
                "an attached disk named by pilot-state-device, a group's as a stateful disk never deleted.",
    validate=_spot_keeps,
    enforcement_level=EnforcementLevel.MANDATORY,
)


def _floor(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    swarm = [(vm.name, vm.props) for vm in effective_vms(args.resources)
             if vm.kind in INSTANCE_KINDS and vm.role == pilot.ROLE_SWARM]
    swarm += [(vms.group.name, vms.vm.props) for vms in group_vms(args.resources) if vms.vm.role == pilot.ROLE_SWARM]
    if any(props.get("scheduling") is UNKNOWN for _, props in swarm):
        return
    if swarm and all(is_spot(props) for _, props in swarm):
        report_violation(f"every swarm VM is spot ({', '.join(sorted(n for n, _ in swarm))}): when Compute Engine "
                         "reclaims a zone's Spot capacity all of them stop at once and no agent stays online. Keep "
                         "an on-demand pool or host as a floor (`fleet capacity` prices the mix).", None)


spot_has_on_demand_floor = StackValidationPolicy(
    name="spot-has-on-demand-floor",
    description="A fleet with spot swarm VMs keeps some on-demand ones as a floor.",
    validate=_floor,
    enforcement_level=ADVISORY,
)
