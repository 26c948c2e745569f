"""agents-fit-memory: a swarm host's agent target must fit its machine's memory with headroom."""

from __future__ import annotations

from collections.abc import Mapping

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from fleet import pilot
from fleet.memory_budget import MemoryBudget

from .config import ConfigSpec, config_for, config_schema
from .gce import VM_TYPES, machine_memory_mb, metadata_value

CONFIG: ConfigSpec = {
    "agentMemoryMb": ("number", pilot.DEFAULT_AGENT_MEMORY_MB),
    "headroomPercent": ("number", pilot.DEFAULT_HEADROOM_PERCENT),
    "osReserveMb": ("integer", pilot.DEFAULT_OS_RESERVE_MB),
}


def _fits(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    # every VM kind: instances, templates, instances from a template or a machine image
    if args.resource_type not in VM_TYPES:
        return
    metadata = args.props.get("metadata") or {}
    if not isinstance(metadata, Mapping) or metadata_value(metadata, pilot.MetadataKey.ROLE) != pilot.ROLE_SWARM:
        return
    target_text = metadata_value(metadata, pilot.MetadataKey.AGENT_TARGET)
    try:
        target = int(target_text)
    except ValueError:
        report_violation(f"{args.name}: swarm host without a numeric {pilot.MetadataKey.AGENT_TARGET} "
                         f"({target_text!r}); its memory cannot be checked.", None)
        return
    machine_type = str(args.props.get("machineType") or "")
    memory = machine_memory_mb(machine_type)
    if memory is None:
        report_violation(f"{args.name}: machine type {machine_type!r} is not in the fleet's machine-type table "
                         "(fleet/data/machine_types.yaml); its memory cannot be checked.", None)
        return
    config = config_for(args.get_config(), CONFIG)
    budget = MemoryBudget(memory, int(config["osReserveMb"]), float(config["agentMemoryMb"]),
                          float(config["headroomPercent"]))
    if not budget.fits(target):
        report_violation(f"{args.name}: {budget.explain(target, machine_type.rsplit('/', 1)[-1])}. The seed fleet "
                         "pushed a 32 GB VM into swap at 2,000 agents.", None)


agents_fit_memory = ResourceValidationPolicy(
    name="agents-fit-memory",
    description="Each swarm host's agent target x per-agent memory, with headroom, fits its machine's memory "
                "minus the OS reserve.",
    validate=_fits,
    config_schema=config_schema(CONFIG),
)
