"""pilot-ports-open: agents can reach the rendezvous, and peers can reach every swarm host's agents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import ReportViolation, StackValidationArgs, StackValidationPolicy

from fleet import pilot

from .config import ConfigSpec, config_for, config_schema
from .gce import FIREWALL, VM_TYPES, allowed, applies_to, covers

CONFIG: ConfigSpec = {
    "agentSourceRanges": ("array", ["0.0.0.0/0"]),
    "peerSourceRanges": ("array", ["0.0.0.0/0"]),
    "registryPort": ("integer", pilot.REGISTRY_PORT),
    "beaconPort": ("integer", pilot.BEACON_PORT),
}


def _uncovered(rules: Sequence[Mapping[str, Any]], tags: Sequence[str], protocol: str, first: int, last: int,
               wanted: Sequence[str]) -> list[str]:
    """Source ranges in `wanted` that no single applicable rule admits for protocol first..last."""
    sources = [rule.get("sourceRanges") or [] for rule in rules
               if applies_to(rule, tags) and allowed(rule, protocol, first, last)]
    return [w for w in wanted if not any(covers(s, w) for s in sources)]


def _ports_open(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    config = config_for(args.get_config(), CONFIG)
    rules = [r.props for r in args.resources if r.resource_type == FIREWALL]
    for vm in args.resources:
        if vm.resource_type not in VM_TYPES:
            continue
        metadata = vm.props.get("metadata") or {}
        role = metadata.get(pilot.MetadataKey.ROLE)
        tags = list(vm.props.get("tags") or [])
        if role == pilot.ROLE_RENDEZVOUS:
            for what, protocol, port in (("registry", "tcp", int(config["registryPort"])),
                                         ("beacon", "udp", int(config["beaconPort"]))):
                missing = _uncovered(rules, tags, protocol, port, port, config["agentSourceRanges"])
                if missing:
                    report_violation(f"rendezvous {vm.name}: the {what} ({port}/{protocol}) is not open to the "
                                     f"agents' source range(s) {', '.join(missing)}.", vm.urn)
        elif role == pilot.ROLE_SWARM:
            try:
                base = int(str(metadata.get(pilot.MetadataKey.BASE_UDP_PORT)))
                target = int(str(metadata.get(pilot.MetadataKey.AGENT_TARGET)))
            except ValueError:
                report_violation(f"swarm host {vm.name}: {pilot.MetadataKey.BASE_UDP_PORT} and "
                                 f"{pilot.MetadataKey.AGENT_TARGET} must be numbers to check its ports.", vm.urn)
                continue
            last = base + target - 1
            missing = _uncovered(rules, tags, "udp", base, last, config["peerSourceRanges"])
            if missing:
                report_violation(f"swarm host {vm.name}: its agents' UDP ports {base}-{last} are not open to "
                                 f"{', '.join(missing)}; peers cannot reach its {target} agents.", vm.urn)


pilot_ports_open = StackValidationPolicy(
    name="pilot-ports-open",
    description="The rendezvous is reachable on its registry (TCP) and beacon (UDP) ports from the agents' "
                "ranges, and each swarm host's agent UDP range is open to its peers.",
    validate=_ports_open,
    config_schema=config_schema(CONFIG),
)
