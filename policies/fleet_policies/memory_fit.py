"""agents-fit-memory: a swarm host's agent target must fit its machine's memory with headroom."""

from __future__ import annotations

from pulumi_policy import ReportViolation, StackValidationArgs, StackValidationPolicy

from . import facts as pilot
from .facts import MemoryBudget
from .gce import agent_target, machine_memory_mb
from .policy_config import ConfigSpec, config_for, config_schema
from .vms import effective_vms

NAME = "agents-fit-memory"
CONFIG: ConfigSpec = {
    "agentMemoryMb": ("number", pilot.DEFAULT_AGENT_MEMORY_MB),
    "headroomPercent": ("number", pilot.DEFAULT_HEADROOM_PERCENT),
    "osReserveMb": ("integer", pilot.DEFAULT_OS_RESERVE_MB),
}


def _fits(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    config = config_for(args.get_config(), CONFIG)
    # every VM kind, and the VMs of groups whose configs override their template's metadata (agent targets too)
    for vm in effective_vms(args.resources):
        if vm.unknown_for(NAME) or vm.role != pilot.ROLE_SWARM:
            continue  # a value it needs is not known at preview: preview-unknowns names it
        target, target_text = agent_target(vm.metadata)
        if target is None:
            report_violation(f"{vm.name}: swarm host without a numeric {pilot.MetadataKey.TARGET_AGENTS} "
                             f"({target_text!r}); its memory cannot be checked.", vm.urn)
            continue
        machine_type = vm.machine_type
        memory = machine_memory_mb(machine_type)
        if memory is None:
            report_violation(f"{vm.name}: machine type {machine_type!r} is not in the fleet's machine-type table "
                             "(fleet/facts/data/machine_types.yaml); its memory cannot be checked.", vm.urn)
            continue
        budget = MemoryBudget(memory, int(config["osReserveMb"]), float(config["agentMemoryMb"]),
                              float(config["headroomPercent"]))
        if not budget.fits(target):
            report_violation(f"{vm.name}: {budget.explain(target, machine_type.rsplit('/', 1)[-1])}. The seed fleet "
                             "pushed a 32 GB VM into swap at 2,000 agents.", vm.urn)


agents_fit_memory = StackValidationPolicy(
    name=NAME,
    description="Each swarm host's agent target x per-agent memory, with headroom, fits its machine's memory "
                "minus the OS reserve.",
    validate=_fits,
    config_schema=config_schema(CONFIG),
)
