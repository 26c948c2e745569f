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
from .firewall import Firewall
from .firewall_rules import target_of
from .gce import (
    HEALTH_CHECK,
    INSTANCE_TEMPLATE,
    MIG,
    REGION_HEALTH_CHECK,
    REGION_INSTANCE_TEMPLATE,
    REGION_MIG,
    known,
    metadata_value,
    probe_of,
    referenced,
    zones_of,
)
from .network import Networks
from .policy_config import ConfigSpec, config_for, config_schema
from .preview import UNKNOWN, Plain
from .vms import EffectiveVm, GroupVms, effective_vms, group_vms

HEAL = "pools-heal-safely"
KEEP_STATE = "pools-keep-agent-state"

CONFIG: ConfigSpec = {
    "minInitialDelaySec": ("integer", 600),
    # where a VM's metadata does not say (pilot-health-port), the port its supervisor serves /healthz on
    "healthPort": ("integer", pilot.SUPERVISOR_HEALTH_PORT),
}


def _healing(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """A group's autohealing policy from its plain properties (preview.plain)."""
    healing = props.get("autoHealingPolicies") or {}
    if isinstance(healing, list):  # older providers: a list of one
        healing = healing[0] if healing else {}
    return healing if isinstance(healing, Mapping) else {}


def _number(value: Any) -> float | None:
    """A number from plain properties; None when unset or not known at preview (UNKNOWN)."""
    try:
        return float(value) if value is not None and value is not UNKNOWN else None
    except (TypeError, ValueError):
        return None


def max_unavailable(group: Any, props: Mapping[str, Any]) -> tuple[float | None, str]:
    """The most VMs a rolling update may take down at once, as the API applies the update policy (PROPS: the
    group's plain properties): a fixed count, a percentage of the target size, or, unset, the API's default (the
    number of zones the group runs in); None where it is not known at preview. The text says where it came from."""
    update = props.get("updatePolicy")
    update = update if isinstance(update, Mapping) else {}
    fixed, percent = update.get("maxUnavailableFixed"), update.get("maxUnavailablePercent")
    if fixed is None and percent is None:
        zones = zones_of(group)
        return zones, f"maxUnavailable unset: the API's default, the group's {zones} zone(s)"
    if fixed is not None:
        down = _number(fixed)
        return down, f"maxUnavailableFixed {fixed}" if down is not None else "maxUnavailable not known at preview"
    share, size = _number(percent), _number(props.get("targetSize"))
    if share is None or size is None:
        return None, "maxUnavailable not known at preview"
    return size * share / 100, f"maxUnavailablePercent {percent}"


def _group_problems(group: Any, min_delay: int) -> list[str]:
    """A group's autohealing and update policy. A value not known at preview (a new health check's id, a size
    from another resource) counts as set, and what depends on its figure is not judged."""
    props = Plain.of(group).props
    problems = []
    healing = _healing(props)
    delay = _number(healing.get("initialDelaySec"))
    if not healing.get("healthCheck"):
        problems.append("has no autohealing health check: a VM whose agents died stays in the group")
    elif healing.get("initialDelaySec") is not UNKNOWN and (delay or 0) < min_delay:
        problems.append(f"autohealing starts after {int(delay or 0)} s, under {min_delay} s: "
                        "VMs still booting and starting agents would be recreated")
    if not props.get("updatePolicy"):
        problems.append("has no update policy: a template change would not roll out in bounded steps")
        return problems
    size = _number(props.get("targetSize"))
    down, why = max_unavailable(group, props)
    if down is not None and size and down >= size:
        problems.append(f"may take every VM down at once in a rolling update ({why} covers all {int(size)} VMs)")
    return problems


def _probe_problems(vms: GroupVms, checks: list[Any], default_port: int) -> list[str]:
    """The group's autohealing health check against the supervisor its template's VMs run: plain HTTP, on the
    VMs' health port (their pilot-health-port), on the supervisor's path."""
    link = known(lambda: _healing(vms.group.props).get("healthCheck"))
    problems = []
    for check in referenced(vms.group, ["autoHealingPolicies"], [link], checks):
        probe = probe_of(check.props, known(lambda: vms.group.props.get("namedPorts")))
        port = vms.vm.health_port(default_port)
        if probe is None or port is None or not probe.known:
            continue  # no probe block, a malformed port (the VM contract's check says so), or not known yet
        if probe.protocol in ("TCP", "SSL"):
            problems.append(f"autoheals on {check.name}, a {probe.protocol} probe: it sees only that a port is open, "
                            f"so a VM whose agents died stays healthy; probe the supervisor's "
                            f"{pilot.SUPERVISOR_HEALTH_PATH} over HTTP on {port}")
        elif probe.protocol != "HTTP":
            problems.append(f"autoheals on {check.name}, a {probe.protocol} probe: the supervisor serves plain HTTP "
                            f"{pilot.SUPERVISOR_HEALTH_PATH} on {port}, so every VM would fail it and be recreated")
        elif probe.port != port:
            problems.append(f"autoheals on {check.name}, which probes port {probe.port_text}, but the supervisor of "
                            f"its template {vms.template.name} serves {pilot.SUPERVISOR_HEALTH_PATH} on {port} "
                            f"({pilot.MetadataKey.HEALTH_PORT}): every VM would fail it and be recreated in a loop")
        elif probe.path != pilot.SUPERVISOR_HEALTH_PATH:
            problems.append(f"autoheals on {check.name}, which asks for {probe.path}: the supervisor answers on "
                            f"{pilot.SUPERVISOR_HEALTH_PATH}, so every VM would fail it and be recreated")
    return problems


def _heal_safely(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    config = config_for(args.get_config(), CONFIG)
    default_port = int(config["healthPort"])
    checks = [r for r in args.resources if r.resource_type in (HEALTH_CHECK, REGION_HEALTH_CHECK)]
    for group in args.resources:
        if group.resource_type in (MIG, REGION_MIG):
            for problem in _group_problems(group, int(config["minInitialDelaySec"])):
                report_violation(f"instance group {group.name} {problem}.", group.urn)
    swarm: dict[str, tuple[Any, EffectiveVm]] = {}  # template urn -> its VMs, as its groups run it and as it is
    for vms in group_vms(args.resources):
        if not vms.vm.unknown_for(HEAL) and vms.vm.role == pilot.ROLE_SWARM:
            swarm.setdefault(vms.template.urn, (vms.template, vms.vm))
            for problem in _probe_problems(vms, checks, default_port):
                report_violation(f"swarm instance group {vms.group.name} {problem}.", vms.group.urn)
    for vm in effective_vms(args.resources):
        if vm.kind in (INSTANCE_TEMPLATE, REGION_INSTANCE_TEMPLATE) and not vm.unknown_for(HEAL) and \
                vm.role == pilot.ROLE_SWARM:
            swarm.setdefault(vm.urn, (next(r for r in args.resources if r.urn == vm.urn), vm))
    firewall = Firewall(args.resources, Networks(args.resources))  # probers carry no tag: a tag source is not theirs
    for template, vm in swarm.values():
        port = vm.health_port(default_port)
        target = target_of(vm)
        if port is None:
            continue  # a malformed port: the VM contract's check says so
        # a rule not known at preview is judged both ways; what it alone decides, preview-unknowns names
        missing = [r for r in pilot.HEALTH_CHECK_RANGES if firewall.admits(target, "tcp", port, port, r) is False]
        if missing:
            report_violation(f"swarm template {template.name}: Google's health checkers ({', '.join(missing)}) "
                             f"cannot reach the supervisor on {port}/tcp; autohealing would see every VM as "
                             "unhealthy and recreate it.", template.urn)


pools_heal_safely = StackValidationPolicy(
    name=HEAL,
    description="Swarm instance groups autoheal on the supervisor's health with a start-up delay, roll out in "
                "bounded steps, and Google's health checkers can reach the health port.",
    validate=_heal_safely,
    config_schema=config_schema(CONFIG),
)


def state_problems(group: Mapping[str, Any], template: Mapping[str, Any]) -> list[str]:
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
    stateful = group.get("statefulDisks")
    if stateful is UNKNOWN:
        return []  # not known at preview: judged at `pulumi up`
    kept = [d for d in stateful or [] if isinstance(d, Mapping) and d.get("deviceName") == device]
    if not kept:
        return [f"does not keep the disk {device} as stateful: a recreated VM gets a new, empty one"]
    if str(kept[0].get("deleteRule") or "NEVER") != "NEVER":
        return [f"keeps {device} with deleteRule {kept[0].get('deleteRule')}: it must never be deleted with the VM"]
    return []


def _keep_agent_state(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for vms in group_vms(args.resources):  # each version's template, a canary's too, with the group's overlay
        if not vms.vm.unknown_for(KEEP_STATE) and vms.vm.role == pilot.ROLE_SWARM:
            for problem in state_problems(Plain.of(vms.group).props, {**vms.vm.props, "metadata": vms.vm.metadata}):
                report_violation(f"swarm instance group {vms.group.name} {problem}.", vms.group.urn)


pools_keep_agent_state = StackValidationPolicy(
    name=KEEP_STATE,
    description="A swarm instance group keeps each VM's agent state disk (its template's pilot-state-device) as a "
                "stateful disk that is never deleted, so recreated VMs keep their agents' identities.",
    validate=_keep_agent_state,
)
