"""pools-heal-safely: managed instance groups of swarm VMs heal and roll out without losing the fleet.

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

from fleet import pilot

from .config import ConfigSpec, config_for, config_schema
from .gce import FIREWALL, INSTANCE_TEMPLATE, MIG, REGION_INSTANCE_TEMPLATE, REGION_MIG, allowed, applies_to, covers

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
    port = int(config["healthPort"])
    for template in args.resources:
        if template.resource_type not in (INSTANCE_TEMPLATE, REGION_INSTANCE_TEMPLATE):
            continue
        if (template.props.get("metadata") or {}).get(pilot.MetadataKey.ROLE) != pilot.ROLE_SWARM:
            continue
        tags = list(template.props.get("tags") or [])
        sources = [rule.get("sourceRanges") or [] for rule in rules
                   if applies_to(rule, tags) and allowed(rule, "tcp", port, port)]
        missing = [r for r in pilot.HEALTH_CHECK_RANGES if not any(covers(s, r) for s in sources)]
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
