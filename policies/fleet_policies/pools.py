"""pools-heal-safely and pools-keep-agent-state: managed instance groups of swarm VMs heal and roll out without
losing the fleet or its agents' identities.

- every swarm group has autohealing on a health check, with an initial delay long enough for a VM to boot and
  start its supervisor (agents then ramp at the registry's pace; the supervisor's /healthz allows for that);
- its rolling updates replace a bounded number of VMs (never all at once);
- Google's health checkers reach the supervisor's health port on every swarm template's VMs (otherwise every VM
  looks unhealthy and autohealing recreates them in a loop).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import ReportViolation, StackValidationArgs, StackValidationPolicy

from . import facts as pilot
from .firewall import admits, subnet_networks, target_of
from .gce import (
    FIREWALL,
    INSTANCE_TEMPLATE,
    MIG,
    REGION_INSTANCE_TEMPLATE,
    REGION_MIG,
    metadata_value,
    templates_of,
)
from .policy_config import ConfigSpec, config_for, config_schema

CONFIG: ConfigSpec = {
    "minInitialDelaySec": ("integer", 600),
    "healthPort": ("integer", pilot.SUPERVISOR_HEALTH_PORT),
}


def _group_problems(props: Mapping[str, Any], min_delay: int) -> list[str]:
    problems = []
    healing = props.get("autoHealingPolicies") or {}
    if isinstance(healing, list):  # older providers: a list of one
        healing = healing[0] if healing else {}
    if not healing.get("healthCheck"):
        problems.append("has no autohealing health check: a VM whose agents died stays in the group")
    elif int(healing.get("initialDelaySec") or 0) < min_delay:
        problems.append(f"autohealing starts after {healing.get('initialDelaySec') or 0} s, under {min_delay} s: "
                        "VMs still booting and starting agents would be recreated")
    update = props.get("updatePolicy") or {}
    size = int(props.get("targetSize") or 0)
    unavailable_fixed = update.get("maxUnavailableFixed")
    unavailable_percent = update.get("maxUnavailablePercent")
    if not update:
        problems.append("has no update policy: a template change would not roll out in bounded steps")
    elif (unavailable_fixed is not None and size and int(unavailable_fixed) >= size) or \
            (unavailable_percent is not None and int(unavailable_percent) >= 100):
        problems.append("may take every VM down at once in a rolling update (maxUnavailable covers the whole "
                        "group)")
    return problems


def _heal_safely(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    config = config_for(args.get_config(), CONFIG)
    for group in args.resources:
        if group.resource_type in (MIG, REGION_MIG):
            for problem in _group_problems(group.props, int(config["minInitialDelaySec"])):
                report_violation(f"instance group {group.name} {problem}.", group.urn)
    rules = [r.props for r in args.resources if r.resource_type == FIREWALL]
    subnets = subnet_networks(args.resources)
    port = int(config["healthPort"])
    for template in args.resources:
        if template.resource_type not in (INSTANCE_TEMPLATE, REGION_INSTANCE_TEMPLATE):
            continue
        if metadata_value(template.props.get("metadata") or {}, pilot.MetadataKey.ROLE) != pilot.ROLE_SWARM:
            continue
        target = target_of(template.props, subnets)
        missing = [r for r in pilot.HEALTH_CHECK_RANGES if not admits(rules, target, "tcp", port, port, r)]
        if missing:
            report_violation(f"swarm template {template.name}: Google's health checkers ({', '.join(missing)}) "
                             f"cannot reach the supervisor on {port}/tcp; autohealing would see every VM as "
                             "unhealthy and recreate it.", template.urn)


pools_heal_safely = StackValidationPolicy(
    name="pools-heal-safely",
    description="Swarm instance groups autoheal on the supervisor's health with a start-up delay, roll out in "
                "bounded steps, and Google's health checkers can reach the health port.",
    validate=_heal_safely,
    config_schema=config_schema(CONFIG),
)


def _state_problems(group: Mapping[str, Any], template: Mapping[str, Any]) -> list[str]:
    """Where a swarm group's agent state would not survive a recreated VM (the facts from the template's own
    metadata and disks)."""
    device = metadata_value(template.get("metadata") or {}, pilot.MetadataKey.STATE_DEVICE)
    if not device:
        return [f"its template sets no {pilot.MetadataKey.STATE_DEVICE}: the agents' identities live on the boot "
                "disk, and every VM autohealing or a rolling update recreates comes back as new identities "
                "(hours of the registry's rate limit per VM)"]
    disks = [d for d in template.get("disks") or [] if isinstance(d, Mapping)]
    if not any(d.get("deviceName") == device and not d.get("boot") for d in disks):
        return [f"its template has no disk named {device} ({pilot.MetadataKey.STATE_DEVICE}) for the agents' state"]
    kept = [d for d in group.get("statefulDisks") or [] if isinstance(d, Mapping) and d.get("deviceName") == device]
    if not kept:
        return [f"does not keep the disk {device} as stateful: a recreated VM gets a new, empty one"]
    if str(kept[0].get("deleteRule") or "NEVER") != "NEVER":
        return [f"keeps {device} with deleteRule {kept[0].get('deleteRule')}: it must never be deleted with the VM"]
    return []


def _keep_agent_state(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    templates = {t.urn: t for t in args.resources
                 if t.resource_type in (INSTANCE_TEMPLATE, REGION_INSTANCE_TEMPLATE)
                 and metadata_value(t.props.get("metadata") or {}, pilot.MetadataKey.ROLE) == pilot.ROLE_SWARM}
    for group in args.resources:
        if group.resource_type not in (MIG, REGION_MIG):
            continue
        for template in templates_of(group, templates.values()):  # each version's, a canary's too
            for problem in _state_problems(group.props, template.props):
                report_violation(f"swarm instance group {group.name} {problem}.", group.urn)


pools_keep_agent_state = StackValidationPolicy(
    name="pools-keep-agent-state",
    description="A swarm instance group keeps each VM's agent state disk (its template's pilot-state-device) as a "
                "stateful disk that is never deleted, so recreated VMs keep their agents' identities.",
    validate=_keep_agent_state,
)
