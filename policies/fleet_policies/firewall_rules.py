"""Firewall rules as Compute Engine's ingress evaluation reads them: a VPC rule's allows and denies, a firewall-policy
rule, what a VM is matched by (its network, tags, service accounts, secure tags, addresses), and which fleet VMs'
traffic a tag-sourced rule matches. How the rules and policies combine for one VM, in their order, is firewall.py's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import facts as pilot
from .gce import protocol_name, truthy
from .network import NetworkRef, network_ref, project_of, zone_region

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
    """Whether the ranges in `sources` together contain the network `wanted` (0.0.0.0/1 and 128.0.0.0/1 are the
    whole of IPv4, as one rule's source list)."""
    target = ipaddress.ip_network(str(wanted), strict=False)
    same = [s for s in networks(sources) if s.version == target.version]
    return any(target.subnet_of(s) for s in ipaddress.collapse_addresses(same))  # type: ignore[arg-type]


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
        proto = protocol_name(allow.get("protocol", ""))
        if proto not in (protocol, "all"):
            continue
        if any(lo <= first and last <= hi for lo, hi in port_ranges(allow.get("ports"))):
            return True
    return False


def is_ingress(rule: Mapping[str, Any]) -> bool:
    return str(rule.get("direction") or "INGRESS").upper() == "INGRESS"


def ingress_in_force(rule: Mapping[str, Any]) -> bool:
    """An ingress rule Compute Engine applies: a disabled rule (a VPC rule's or a policy rule's) admits nothing."""
    return is_ingress(rule) and not truthy(rule.get("disabled", False))


@dataclass(frozen=True)
class Target:
    """What firewall rules and policies match one VM by: its network, tags, service accounts, secure tags (the
    values of its `params.resourceManagerTags`), and region."""

    network: NetworkRef | None
    tags: frozenset[str]
    service_accounts: frozenset[str]
    secure_tags: frozenset[str] = frozenset()
    region: str = ""
    urn: str = ""  # the VM's resource: tag bindings name it
    addresses: frozenset[str] = frozenset()  # its internal and external addresses, where the program sets them
    all_addresses: bool = False  # every address it has is among them (none left for Compute Engine to give)


def target_of(vm: Any) -> Target:
    """The firewall's view of an EffectiveVm (vms.py)."""
    props = vm.props
    account = props.get("serviceAccount")
    emails = {str(account.get("email"))} if isinstance(account, Mapping) and account.get("email") else set()
    params = props.get("params")
    tags = params.get("resourceManagerTags") if isinstance(params, Mapping) else None
    secure = {str(v) for v in tags.values()} if isinstance(tags, Mapping) else set()
    tag_list = props.get("tags")
    region = zone_region(props.get("zone")) or str(props.get("region") or "")
    nics = props.get("networkInterfaces")
    nic = nics[0] if isinstance(nics, list) and nics and isinstance(nics[0], Mapping) else {}
    given = [nic.get("networkIp"), *(c.get("natIp") if isinstance(c, Mapping) else None
                                      for c in nic.get("accessConfigs") or [])]
    addresses = frozenset(a for a in given if isinstance(a, str) and _is_ip(a))
    return Target(vm.network, frozenset(str(t) for t in tag_list) if isinstance(tag_list, list) else frozenset(),
                  frozenset(emails), frozenset(secure), region, vm.urn, addresses, len(addresses) == len(given))


ALLOW, DENY, NEXT = "allow", "deny", "goto_next"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def priority(rule: Mapping[str, Any]) -> int:
    try:
        return int(float(rule.get("priority") if rule.get("priority") is not None else 1000))
    except (TypeError, ValueError):
        return 1000


@dataclass(frozen=True)
class Rule:
    """One VPC firewall rule's allows or denies, or one firewall-policy rule, as evaluation reads it."""

    name: str
    action: str
    priority: int
    layer4: tuple[tuple[str, tuple[tuple[int, int], ...]], ...]  # (protocol, port ranges); "all" any protocol
    sources: tuple[str, ...] | None  # ranges; None: any source
    other_sources: bool  # sources of other kinds (FQDNs, regions, address groups...): never cover an outside range
    # a VPC rule's source tags and service accounts: traffic from the VMs that carry them (their own addresses)
    source_tags: frozenset[str] = frozenset()
    source_accounts: frozenset[str] = frozenset()
    network: NetworkRef | None = None  # a VPC rule's network (a policy's rules take their policy's attachment)
    target_tags: frozenset[str] = frozenset()
    target_accounts: frozenset[str] = frozenset()
    target_secure_tags: frozenset[str] = frozenset()
    target_networks: tuple[NetworkRef, ...] = ()
    destinations: tuple[str, ...] | None = None  # an ingress rule's destination ranges; None: any address of the VM

    def _to(self, target: Target) -> bool:
        """Whether traffic to TARGET may be matched by the rule's destination ranges, judged to the safe side: an
        allow counts only when every address of the VM is provably inside them, a deny unless every one is provably
        outside (a VM's address is often not known before Compute Engine gives it)."""
        if self.destinations is None:
            return True
        ranges = networks(self.destinations)
        inside = [any(ipaddress.ip_address(a) in r for r in ranges if r.version == ipaddress.ip_address(a).version)
                  for a in target.addresses]
        if self.action == DENY:
            return not target.all_addresses or any(inside)
        return bool(inside) and all(inside)

    def applies(self, target: Target) -> bool:
        if not self._to(target):
            return False
        if self.network is not None and (target.network is None or not self.network.same(target.network)):
            return False
        if self.target_networks and not any(target.network is not None and n.same(target.network)
                                            for n in self.target_networks):
            return False
        if self.target_tags:
            return bool(self.target_tags & target.tags)
        if self.target_secure_tags:
            return bool(self.target_secure_tags & target.secure_tags)
        if self.target_accounts:
            return bool(self.target_accounts & target.service_accounts)
        return True

    def _ports(self, protocol: str) -> list[tuple[int, int]]:
        return [span for proto, spans in self.layer4 if proto in (protocol, "all") for span in spans]

    @property
    def any_source(self) -> bool:
        return self.sources is None and not self.other_sources and not self.source_tags and not self.source_accounts

    def covers(self, protocol: str, first: int, last: int, wanted: str) -> bool:
        """Matches every port first..last of protocol from every address of WANTED (tags and accounts never cover a
        range: they match VMs, not addresses)."""
        if not any(lo <= first and last <= hi for lo, hi in self._ports(protocol)):
            return False
        return self.any_source or covers(self.sources or [], wanted)

    def touches(self, protocol: str, first: int, last: int, wanted: str, senders: Senders) -> bool:
        """Matches some port first..last of protocol from some address of WANTED: a range that overlaps it, a source
        of another kind (an FQDN, a region: any address may be one), or a tag or service account that a fleet VM
        (SENDERS, whose traffic is what is judged) carries; a tag only VMs outside the fleet carry (a quarantine)
        touches none of it."""
        if not any(lo <= last and first <= hi for lo, hi in self._ports(protocol)):
            return False
        if self.any_source or self.other_sources:
            return True
        if senders.carry(self.source_tags, self.source_accounts):
            return True
        target = ipaddress.ip_network(str(wanted), strict=False)
        return any(target.version == n.version and target.overlaps(n) for n in networks(self.sources or []))


@dataclass(frozen=True)
class Senders:
    """The network tags and service accounts the fleet's own VMs carry: a rule whose source is one of them matches
    the fleet's traffic. A fleet VM whose tags or account are not known at preview may carry any (UNKNOWN)."""

    tags: frozenset[str] = frozenset()
    accounts: frozenset[str] = frozenset()
    unknown: bool = False

    def carry(self, tags: frozenset[str], accounts: frozenset[str]) -> bool:
        return bool((tags or accounts) and self.unknown) or bool(tags & self.tags or accounts & self.accounts)


def senders_of(vms: Iterable[Any]) -> Senders:
    """The Senders of the fleet's VMs (EffectiveVm, vms.py): every VM whose role is the rendezvous' or a swarm's,
    or not known at preview."""
    tags: set[str] = set()
    accounts: set[str] = set()
    unknown = False
    for vm in vms:
        if not vm.role_unknown and vm.role not in (pilot.ROLE_RENDEZVOUS, pilot.ROLE_SWARM):
            continue
        target = target_of(vm)
        tags |= target.tags
        accounts |= target.service_accounts
        unknown |= any(u.split(".", 1)[0] in ("tags", "serviceAccount") for u in vm.unknown)
    return Senders(frozenset(tags), frozenset(accounts), unknown)


def _layer4(entries: Any, key: str) -> tuple[tuple[str, tuple[tuple[int, int], ...]], ...]:
    return tuple((protocol_name(e.get(key, "")), tuple(port_ranges(e.get("ports"))))
                 for e in entries or [] if isinstance(e, Mapping))


def vpc_rules(resource: Any, props: Mapping[str, Any]) -> list[Rule]:
    if not ingress_in_force(props):
        return []
    tags = frozenset(str(t) for t in props.get("sourceTags") or [])
    accounts = frozenset(str(a) for a in props.get("sourceServiceAccounts") or [])
    ranges = props.get("sourceRanges") or []
    sources = None if not ranges and not tags and not accounts else tuple(str(r) for r in ranges)
    destinations = props.get("destinationRanges") or None
    common = {"name": resource.name, "priority": priority(props), "sources": sources, "other_sources": False,
              "source_tags": tags, "source_accounts": accounts,
              "destinations": tuple(str(r) for r in destinations) if destinations else None,
              "network": network_ref(props.get("network"), project_of(resource)),
              "target_tags": frozenset(str(t) for t in props.get("targetTags") or []),
              "target_accounts": frozenset(str(a) for a in props.get("targetServiceAccounts") or [])}
    rules = []
    if props.get("allows"):
        rules.append(Rule(action=ALLOW, layer4=_layer4(props.get("allows"), "protocol"), **common))
    if props.get("denies"):
        rules.append(Rule(action=DENY, layer4=_layer4(props.get("denies"), "protocol"), **common))
    return rules


# a policy rule's sources other than ranges
_OTHER_SOURCES = ("srcSecureTags", "srcAddressGroups", "srcFqdns", "srcRegionCodes", "srcThreatIntelligences",
                  "srcNetworks", "srcNetworkScope")


def policy_rule(resource: Any, props: Mapping[str, Any]) -> list[Rule]:
    if not ingress_in_force(props):
        return []
    project = project_of(resource)
    match = props.get("match") if isinstance(props.get("match"), Mapping) else {}
    other = any(match.get(k) for k in _OTHER_SOURCES)
    ranges = match.get("srcIpRanges") or []
    sources = None if not ranges and not other else tuple(str(r) for r in ranges)
    secure = {str(t.get("name")) for t in props.get("targetSecureTags") or [] if isinstance(t, Mapping)}
    destinations = match.get("destIpRanges") or None
    return [Rule(name=resource.name, action=str(props.get("action") or "").lower(), priority=priority(props),
                 destinations=tuple(str(r) for r in destinations) if destinations else None,
                layer4=_layer4(match.get("layer4Configs"), "ipProtocol"), sources=sources, other_sources=other,
                target_accounts=frozenset(str(a) for a in props.get("targetServiceAccounts") or []),
                target_secure_tags=frozenset(secure),
                 target_networks=tuple(n for n in (network_ref(t, project) for t in props.get("targetResources")
                                                   or []) if n is not None))]
