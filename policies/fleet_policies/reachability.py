"""pilot-ports-open: agents can reach the rendezvous, and peers can reach every swarm host's agents.

The ports are the ones each VM boots with, read from its own metadata (the rendezvous' `pilot-registry-port` and
`pilot-beacon-port`, a swarm VM's base port and target), never from defaults: a stack on other ports is judged on
its ports, and a rendezvous moved off the port its firewall opens is caught. Policy config holds only operator
choices: the ranges agents and peers come from.

A swarm VM whose agents register from an alias IP range (agentReach vpc: its internal address and the range, both
from its subnet's primary range) needs the registry port open to that subnet, whatever the policy config says: the
registry must admit every registration address of every swarm VM."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import ReportViolation, StackValidationArgs, StackValidationPolicy

from . import facts as pilot
from .firewall import Firewall
from .firewall_rules import Target, senders_of, target_of
from .gce import agent_target, metadata_value
from .network import Networks
from .policy_config import ConfigSpec, config_for, config_schema
from .vms import EffectiveVm, effective_vms

NAME = "pilot-ports-open"
CONFIG: ConfigSpec = {
    "agentSourceRanges": ("array", ["0.0.0.0/0"]),
    "peerSourceRanges": ("array", ["0.0.0.0/0"]),
}


def _port(metadata: Mapping[str, Any], key: str) -> int | None:
    """A port from metadata, read as the startup script reads it (surrounding whitespace dropped)."""
    value = metadata_value(metadata, key)
    return int(value) if value.isdigit() and 1 <= int(value) <= pilot.MAX_PORT else None


def _uncovered(firewall: Firewall, target: Target, protocol: str, first: int, last: int,
               wanted: Sequence[str]) -> list[str]:
    """Source ranges in `wanted` from which first..last of protocol is not reachable on `target` (firewall.py)."""
    return [w for w in wanted if firewall.admits(target, protocol, first, last, w) is False]  # None: preview-unknowns


def _registration_ranges(vms: Sequence[EffectiveVm], nets: Networks,
                         resources: Sequence[Any]) -> list[tuple[str, str]]:
    """(swarm VM, its subnet's range) for every swarm VM with an alias IP range: its registration addresses. The
    subnet is found by reference (a subnet the stack does not declare, network.existing: its range is not known)."""
    by_urn = {r.urn: r for r in resources}
    found = []
    for vm in vms:
        if vm.role != pilot.ROLE_SWARM:
            continue
        nics = vm.props.get("networkInterfaces") or []
        nic = nics[0] if nics and isinstance(nics[0], Mapping) else {}
        if nic.get("aliasIpRanges"):
            subnet = nets.subnet_range(by_urn.get(vm.urn), vm.props, vm.project)
            if subnet:
                found.append((vm.name, subnet))
    return found


def _ports_open(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    config = config_for(args.get_config(), CONFIG)
    nets = Networks(args.resources)
    every = list(effective_vms(args.resources))
    firewall = Firewall(args.resources, nets, senders_of(every))
    vms = [vm for vm in every if not vm.unknown_for(NAME)]  # else: preview-unknowns
    registering = _registration_ranges(vms, nets, args.resources)
    # every VM kind, and the VMs of groups whose configs override their template's metadata
    for vm in vms:
        metadata = vm.metadata
        role = vm.role
        seen_as = target_of(vm)  # what firewall rules and policies match this VM by; a rule not known at preview
        # is judged both ways (firewall.py): what the known rules decide stands, the rest preview-unknowns names
        if role == pilot.ROLE_RENDEZVOUS:
            for what, protocol, key in (("registry", "tcp", pilot.MetadataKey.REGISTRY_PORT),
                                        ("beacon", "udp", pilot.MetadataKey.BEACON_PORT)):
                port = _port(metadata, key)
                if port is None:
                    report_violation(f"rendezvous {vm.name}: no valid {key} in its metadata: the boot path would "
                                     f"refuse it, and its {what} port cannot be checked.", vm.urn)
                    continue
                missing = _uncovered(firewall, seen_as, protocol, port, port, config["agentSourceRanges"])
                if missing:
                    report_violation(f"rendezvous {vm.name}: the {what} ({port}/{protocol}) is not open to the "
                                     f"agents' source range(s) {', '.join(missing)}.", vm.urn)
                for swarm, subnet in registering:
                    if firewall.admits(seen_as, protocol, port, port, subnet) is False:
                        report_violation(f"rendezvous {vm.name}: the {what} ({port}/{protocol}) is not open to "
                                         f"{subnet}, where swarm VM {swarm}'s agents register from (its internal "
                                         "address and alias IP range).", vm.urn)
        elif role == pilot.ROLE_SWARM:
            base_text = metadata_value(metadata, pilot.MetadataKey.BASE_UDP_PORT)
            target, _ = agent_target(metadata)
            if not base_text.isdigit() or target is None:
                report_violation(f"swarm host {vm.name}: {pilot.MetadataKey.BASE_UDP_PORT} and "
                                 f"{pilot.MetadataKey.TARGET_AGENTS} must be numbers to check its ports.", vm.urn)
                continue
            base = int(base_text)
            last = base + target - 1
            missing = _uncovered(firewall, seen_as, "udp", base, last, config["peerSourceRanges"])
            if missing:
                report_violation(f"swarm host {vm.name}: its agents' UDP ports {base}-{last} are not open to "
                                 f"{', '.join(missing)}; peers cannot reach its {target} agents.", vm.urn)


pilot_ports_open = StackValidationPolicy(
    name=NAME,
    description="The rendezvous is reachable on its registry (TCP) and beacon (UDP) ports from the agents' "
                "ranges, and each swarm host's agent UDP range is open to its peers.",
    validate=_ports_open,
    config_schema=config_schema(CONFIG),
)
