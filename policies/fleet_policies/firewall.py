"""Compute Engine's firewall as it evaluates VPC rules: the rule's network, target tags, else target service
accounts, else every VM; by priority, a deny at the same or a better priority winning; disabled rules skipped; no
source meaning 0.0.0.0/0."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import facts as pilot
from .gce import SUBNETWORK, last_name, truthy

WORLD = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def networks(ranges: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    result = []
    for text in ranges or []:
        try:
            result.append(ipaddress.ip_network(str(text), strict=False))
        except ValueError:
            continue
    return result


def covers(sources: Sequence[Any], wanted: Any) -> bool:
    """Whether one of the ranges in `sources` contains the network `wanted` (no union of several)."""
    target = ipaddress.ip_network(str(wanted), strict=False)
    return any(target.version == s.version and target.subnet_of(s) for s in networks(sources))  # type: ignore[arg-type]


def opens_to_world(rule: Mapping[str, Any]) -> bool:
    """An ingress rule admits the whole internet: a source range of 0.0.0.0/0 (or ::/0), or no source at all (no
    ranges, tags or service accounts), which Compute Engine reads as 0.0.0.0/0."""
    if any(n in WORLD for n in networks(rule.get("sourceRanges"))):
        return True
    return not any(rule.get(key) for key in ("sourceRanges", "sourceTags", "sourceServiceAccounts"))


def port_ranges(ports: Any) -> Iterator[tuple[int, int]]:
    """Ports of a firewall `allows` entry as (first, last); no ports means every port. Numbers and strings are both
    accepted (the SDK takes either; the engine's wire format turns numbers into floats); what is neither is skipped."""
    if not ports:
        yield (0, pilot.MAX_PORT)
        return
    for spec in ports:
        if isinstance(spec, bool):
            continue
        if isinstance(spec, int | float):
            if float(spec).is_integer():
                yield (int(spec), int(spec))
            continue
        first, _, last = str(spec).strip().partition("-")
        try:
            yield (int(first), int(last or first))
        except ValueError:
            continue


def allowed(rule: Mapping[str, Any], protocol: str, first: int, last: int) -> bool:
    """Whether an ingress rule's `allows` admits every port first..last of protocol."""
    for allow in rule.get("allows") or []:
        proto = str(allow.get("protocol", "")).lower()
        if proto not in (protocol, "all"):
            continue
        if any(lo <= first and last <= hi for lo, hi in port_ranges(allow.get("ports"))):
            return True
    return False


def is_ingress(rule: Mapping[str, Any]) -> bool:
    return str(rule.get("direction") or "INGRESS").upper() == "INGRESS"


@dataclass(frozen=True)
class Target:
    """What a firewall rule is matched against on one VM (or template): its network, tags, service accounts."""

    network: str
    tags: frozenset[str]
    service_accounts: frozenset[str]


def subnet_networks(resources: Iterable[Any]) -> dict[str, str]:
    """Subnetwork name -> network name, from the subnetworks declared in the stack."""
    return {last_name(r.props.get("name") or r.name): last_name(r.props.get("network")) for r in resources
            if r.resource_type == SUBNETWORK}


def subnet_ranges(resources: Iterable[Any]) -> dict[str, str]:
    """Subnetwork name -> its primary range, from the subnetworks declared in the stack."""
    return {last_name(r.props.get("name") or r.name): str(r.props.get("ipCidrRange")) for r in resources
            if r.resource_type == SUBNETWORK and isinstance(r.props.get("ipCidrRange"), str)}


def target_of(props: Mapping[str, Any], subnets: Mapping[str, str]) -> Target:
    nics = props.get("networkInterfaces") or []
    nic = nics[0] if nics and isinstance(nics[0], Mapping) else {}
    network = last_name(nic.get("network")) or subnets.get(last_name(nic.get("subnetwork")), "")
    account = props.get("serviceAccount")
    emails = {str(account.get("email"))} if isinstance(account, Mapping) and account.get("email") else set()
    return Target(network, frozenset(str(t) for t in props.get("tags") or []), frozenset(emails))


def applies_to(rule: Mapping[str, Any], target: Target) -> bool:
    """As Compute Engine matches an enabled INGRESS rule: in the VM's network (when both are known), then by
    target tags, else by target service accounts, else to every VM of the network."""
    if truthy(rule.get("disabled", False)) or not is_ingress(rule):
        return False
    network = last_name(rule.get("network"))
    if network and target.network and network != target.network:
        return False
    tags = {str(t) for t in rule.get("targetTags") or []}
    if tags:
        return bool(tags & target.tags)
    accounts = {str(a) for a in rule.get("targetServiceAccounts") or []}
    if accounts:
        return bool(accounts & target.service_accounts)
    return True


def priority(rule: Mapping[str, Any]) -> int:
    try:
        return int(float(rule.get("priority") if rule.get("priority") is not None else 1000))
    except (TypeError, ValueError):
        return 1000


def _sources_cover(rule: Mapping[str, Any], wanted: Any) -> bool:
    """The rule admits every address of `wanted`: a range that contains it, or no source at all (0.0.0.0/0).
    Source tags and service accounts match only VMs of the network, never an outside range."""
    if not any(rule.get(key) for key in ("sourceRanges", "sourceTags", "sourceServiceAccounts")):
        return True
    return covers(rule.get("sourceRanges") or [], wanted)


def _sources_touch(rule: Mapping[str, Any], wanted: Any) -> bool:
    """The rule matches some address of `wanted`."""
    if not any(rule.get(key) for key in ("sourceRanges", "sourceTags", "sourceServiceAccounts")):
        return True
    target = ipaddress.ip_network(str(wanted), strict=False)
    return any(target.version == n.version and target.overlaps(n) for n in networks(rule.get("sourceRanges")))


def _denies_any(rule: Mapping[str, Any], protocol: str, first: int, last: int) -> bool:
    for deny in rule.get("denies") or []:
        if str(deny.get("protocol", "")).lower() not in (protocol, "all"):
            continue
        if any(lo <= last and first <= hi for lo, hi in port_ranges(deny.get("ports"))):
            return True
    return False


def admits(rules: Sequence[Mapping[str, Any]], target: Target, protocol: str, first: int, last: int,
           wanted: Any) -> bool:
    """Whether every port first..last of `protocol` on `target` is reachable from every address of `wanted`, as
    Compute Engine evaluates ingress: the applicable rules by priority (lower number first), a deny winning over
    an allow of the same priority. Judged conservatively: one allow rule must cover the whole range and source,
    and no deny rule of the same or a better priority may touch any part of them."""
    applicable = [r for r in rules if applies_to(r, target)]
    allows = [priority(r) for r in applicable
              if allowed(r, protocol, first, last) and _sources_cover(r, wanted)]
    if not allows:
        return False
    best = min(allows)
    return not any(priority(r) <= best and _denies_any(r, protocol, first, last) and _sources_touch(r, wanted)
                   for r in applicable)
