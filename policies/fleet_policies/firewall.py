"""Compute Engine's firewall as it evaluates ingress, for one VM: hierarchical firewall policies (organization,
then folders) first; then the VPC firewall rules of the VM's network and the network firewall policies attached to
it (global, then the VM's region's), in the order the network's `networkFirewallPolicyEnforcementOrder` sets
(VPC rules first unless BEFORE_CLASSIC_FIREWALL); then the implied deny.

Within the VPC rules: the rules of the VM's network that target it (target tags, else target service accounts,
else every VM), by priority, a deny at the same or a better priority winning, disabled rules skipped, no source
meaning 0.0.0.0/0. Within a policy: its rules that target the VM (secure tags, service accounts, a hierarchical
rule's target networks) by priority; `allow` and `deny` end the evaluation, `goto_next` passes to the next level.
Judged conservatively: traffic is admitted only when a level is proven to allow all of it (one rule covering the
whole port range and source) with no deny before it touching any of it, and every part passed on is admitted by the
levels after. A hierarchical policy the stack associates with an organization or folder is taken to cover the
stack's projects (the stack cannot see the resource hierarchy)."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import facts as pilot
from .gce import (
    FIREWALL,
    HIERARCHICAL_POLICY,
    HIERARCHICAL_POLICY_ASSOCIATION,
    HIERARCHICAL_POLICY_RULE,
    INSTANCE,
    INSTANCE_FROM_MACHINE_IMAGE,
    INSTANCE_FROM_TEMPLATE,
    NETWORK_POLICY,
    NETWORK_POLICY_ASSOCIATION,
    NETWORK_POLICY_RULE,
    REGION_NETWORK_POLICY,
    REGION_NETWORK_POLICY_ASSOCIATION,
    REGION_NETWORK_POLICY_RULE,
    TAG_BINDINGS,
    WITH_RULES,
    known,
    protocol_name,
    referenced,
    truthy,
)
from .network import (
    NetworkRef,
    Networks,
    network_ref,
    project_of,
    zone_region,
)
from .preview import UNKNOWN, Plain

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
        role_unknown = any(u in ("metadata", f"metadata.{pilot.MetadataKey.ROLE}") for u in vm.unknown)
        if not role_unknown and vm.role not in (pilot.ROLE_RENDEZVOUS, pilot.ROLE_SWARM):
            continue
        target = target_of(vm)
        tags |= target.tags
        accounts |= target.service_accounts
        unknown |= any(u.split(".", 1)[0] in ("tags", "serviceAccount") for u in vm.unknown)
    return Senders(frozenset(tags), frozenset(accounts), unknown)


def _layer4(entries: Any, key: str) -> tuple[tuple[str, tuple[tuple[int, int], ...]], ...]:
    return tuple((protocol_name(e.get(key, "")), tuple(port_ranges(e.get("ports"))))
                 for e in entries or [] if isinstance(e, Mapping))


def _vpc_rules(resource: Any, props: Mapping[str, Any]) -> list[Rule]:
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


def _policy_rule(resource: Any, props: Mapping[str, Any]) -> list[Rule]:
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


@dataclass(frozen=True)
class Level:
    """One step of the evaluation: the VPC rules, or one firewall policy's rules."""

    name: str
    rules: tuple[Rule, ...]
    vpc: bool = False
    region: str = ""  # a regional network policy's region
    policy: str = ""  # a policy's URN


@dataclass(frozen=True)
class UnknownRule:
    """A rule holding a value not known at preview, set aside alone: where it sits (the VPC rules of its network,
    or its policies' levels: none found, any policy's), and its priority when that is known. Judged both ways: as
    an allow of everything and as a deny of everything at its place; a verdict both agree on stands."""

    name: str
    paths: tuple[str, ...]
    vpc: bool
    network: NetworkRef | None = None
    policies: tuple[str, ...] = ()
    priority: int | None = None

    def in_level(self, level: Level) -> bool:
        if level.vpc:
            return self.vpc
        return not self.vpc and (not self.policies or level.policy in self.policies)

    def as_rule(self, action: str) -> Rule:
        return Rule(name=self.name, action=action, priority=self.priority if self.priority is not None else 0,
                    layer4=(("all", ((0, pilot.MAX_PORT),)),), sources=None, other_sources=False,
                    network=self.network)


# What the evaluation never reads of a rule: a value of these not known at preview sets nothing aside
UNREAD = frozenset({"description", "name", "ruleName", "logConfig", "enableLogging"})


@dataclass(frozen=True)
class _Attached:
    """A network firewall policy attached to a network (global, or in a region)."""

    network: NetworkRef
    level: Level


class Firewall:
    """The stack's VPC firewall rules and firewall policies, paired by reference: a policy rule with its policy
    (`firewallPolicy` holds its name, id or link), an association with its policy and its network or node."""

    def __init__(self, resources: Sequence[Any], networks: Networks, senders: Senders = Senders()) -> None:
        self._networks = networks
        self.senders = senders
        # rules with a value not known at preview, each set aside alone
        self.unknown: list[UnknownRule] = []
        self._vpc = [rule for r in resources if r.resource_type == FIREWALL for rule in self._read(r, _vpc_rules)]
        policies = [r for r in resources if r.resource_type in (NETWORK_POLICY, REGION_NETWORK_POLICY,
                                                                  HIERARCHICAL_POLICY, *WITH_RULES)]
        rules: dict[str, list[Rule]] = {p.urn: [] for p in policies}
        for policy in (p for p in policies if p.resource_type in WITH_RULES):
            rules[policy.urn] += self._inline_rules(policy)
        self._bound = _tag_bindings(resources)
        for r in resources:
            if r.resource_type in (NETWORK_POLICY_RULE, REGION_NETWORK_POLICY_RULE, HIERARCHICAL_POLICY_RULE):
                # a new policy's name and id are not known at preview: the rule is paired with it by reference
                # (the engine's propertyDependencies), and its own values are read as they are
                paired = self._policy_of(r, policies)
                made = self._read(r, _policy_rule, {"firewallPolicy"} if paired else set(),
                                  tuple(p.urn for p in paired))
                for policy in paired:
                    rules[policy.urn] += made
        self._attached: list[_Attached] = []
        organization: list[Level] = []
        folders: list[Level] = []
        for a in resources:
            if a.resource_type not in (NETWORK_POLICY_ASSOCIATION, REGION_NETWORK_POLICY_ASSOCIATION,
                                       HIERARCHICAL_POLICY_ASSOCIATION):
                continue
            for policy in self._policy_of(a, policies):
                target = known(lambda a=a: a.props.get("attachmentTarget"))
                level = Level(f"firewall policy {policy.name}", tuple(rules[policy.urn]),
                              region=str(known(lambda p=policy: p.props.get("region")) or ""), policy=policy.urn)
                if a.resource_type == HIERARCHICAL_POLICY_ASSOCIATION:
                    (organization if str(target).startswith("organizations/") else folders).append(level)
                    continue
                network = network_ref(target, project_of(a))
                if network is not None:
                    self._attached.append(_Attached(network, level))
        self._hierarchical = [*organization, *folders]

    def _read(self, resource: Any, build: Any, paired_by_reference: set[str] | frozenset[str] = frozenset(),
              policies: tuple[str, ...] = ()) -> list[Rule]:
        """The rules RESOURCE makes; none, and an UnknownRule in `unknown`, when a value the evaluation reads is not
        known at preview (PAIRED_BY_REFERENCE: values it was paired by already, by reference)."""
        read = Plain.of(resource)
        paths = sorted(p for p in read.unknown if p.split(".", 1)[0] not in UNREAD | paired_by_reference)
        if paths:
            vpc = resource.resource_type == FIREWALL
            self.unknown.append(UnknownRule(
                resource.name, tuple(paths), vpc,
                network_ref(read.props.get("network"), project_of(resource)) if vpc else None,
                policies, priority(read.props) if "priority" not in read.unknown else None))
            return []
        return list(build(resource, read.props))

    def _inline_rules(self, policy: Any) -> list[Rule]:
        """The rules a *WithRules policy declares in its own `rules`; each holding an unknown value set aside alone
        (the whole list not known: one unknown rule of the policy)."""
        read = Plain.of(policy)
        if "rules" in read.unknown:
            self.unknown.append(UnknownRule(policy.name, ("rules",), False, None, (policy.urn,)))
            return []
        made = []
        for i, rule in enumerate(read.props.get("rules") or []):
            paths = sorted(p for p in read.unknown if p.startswith(f"rules.{i}.")
                           and p.split(".")[2] not in UNREAD)
            if paths or not isinstance(rule, Mapping):
                known_priority = f"rules.{i}.priority" not in read.unknown and isinstance(rule, Mapping)
                self.unknown.append(UnknownRule(f"{policy.name} rule {i}", tuple(paths), False, None, (policy.urn,),
                                                priority(rule) if known_priority else None))
                continue
            made += _policy_rule(policy, rule)
        return made

    def unknown_for(self, target: Target) -> list[str]:
        """The rules that could judge TARGET but hold a value not known at preview, each with the values."""
        found = [f"firewall rule {u.name}'s {', '.join(u.paths)}" for u in self._unknown_for(target)]
        bound = self._bound.get(target.urn)
        if bound is not None and bound.unknown:
            found.append(f"the secure tag bound to it by {', '.join(bound.unknown)}")
        return found

    def _unknown_for(self, target: Target) -> list[UnknownRule]:
        return [u for u in self.unknown
                if not u.vpc or u.network is None or target.network is None or u.network.same(target.network)]

    @staticmethod
    def _policy_of(resource: Any, policies: list[Any]) -> list[Any]:
        value = known(lambda: resource.props.get("firewallPolicy"))
        return referenced(resource, ["firewallPolicy"], [value], policies)

    def levels(self, target: Target) -> list[Level]:
        """The levels that judge TARGET's ingress, in Compute Engine's order."""
        if target.network is None:
            return list(self._hierarchical)
        vpc = Level("VPC firewall rules", tuple(self._vpc), vpc=True)
        attached = [a.level for a in self._attached if a.network.same(target.network)]
        policies = [lv for lv in attached if not lv.region] + \
            [lv for lv in attached if lv.region and (not target.region or lv.region == target.region)]
        if self._networks.enforcement_order(target.network) == "BEFORE_CLASSIC_FIREWALL":
            return [*self._hierarchical, *policies, vpc]
        return [*self._hierarchical, vpc, *policies]

    def admits(self, target: Target, protocol: str, first: int, last: int, wanted: Any) -> bool | None:
        """Whether every port first..last of PROTOCOL on TARGET is reachable from every address of WANTED; None when
        it depends on a rule holding a value not known at preview (`unknown_for` says which): each such rule is
        judged as allowing everything and as denying everything at its place, and a verdict both agree on stands,
        so an unknown rule never hides what the known ones show."""
        bound = self._bound.get(target.urn)
        if bound is not None:
            target = dataclasses.replace(target, secure_tags=target.secure_tags | bound.tags)
        levels, unknown = self.levels(target), self._unknown_for(target)
        maybe_tagged = bound is not None and bool(bound.unknown)
        if not unknown and not maybe_tagged:
            return _through(levels, target, protocol, first, last, str(wanted), self.senders)
        both = []
        for action in (ALLOW, DENY):  # every unknown taken as admitting, then as refusing
            judged = _with(levels, unknown, action)
            if maybe_tagged:  # a rule targeting a secure tag the VM may carry applies when that is worse/better
                judged = _maybe_tagged(judged, target, action)
            both.append(_through(judged, target, protocol, first, last, str(wanted), self.senders))
        return both[0] if both[0] == both[1] else None


def _maybe_tagged(levels: Sequence[Level], target: Target, action: str) -> list[Level]:
    """LEVELS for a VM bound to secure tags not known at preview: a policy rule targeting secure tags it is not
    known to carry may apply; taken as admitting (ACTION allow) it applies when it is not a deny, taken as refusing
    only when it is one."""
    def may(rule: Rule) -> bool:
        return bool(rule.target_secure_tags) and not rule.target_secure_tags & target.secure_tags

    return [dataclasses.replace(level, rules=tuple(
        dataclasses.replace(r, target_secure_tags=frozenset()) if may(r) and ((r.action == DENY) == (action == DENY))
        else r for r in level.rules)) for level in levels]


def _with(levels: Sequence[Level], unknown: Sequence[UnknownRule], action: str) -> list[Level]:
    """LEVELS with each unknown rule in its place as an ACTION of everything."""
    return [dataclasses.replace(level, rules=(*level.rules, *(u.as_rule(action) for u in unknown
                                                              if u.in_level(level))))
            for level in levels]


def _through(levels: Sequence[Level], target: Target, protocol: str, first: int, last: int, wanted: str,
             senders: Senders) -> bool:
    for i, level in enumerate(levels):
        verdict, passed_on = _verdict(level, target, protocol, first, last, wanted, senders)
        if verdict == DENY:
            return False
        if verdict == ALLOW:
            return not passed_on or _through(levels[i + 1:], target, protocol, first, last, wanted, senders)
    return False  # the implied deny


def _verdict(level: Level, target: Target, protocol: str, first: int, last: int, wanted: str,
             senders: Senders) -> tuple[str, bool]:
    """ALLOW, DENY or NEXT for this level, and whether some part was passed on to the next levels (goto_next)."""
    rules = [r for r in level.rules if r.applies(target)]
    if level.vpc:
        allows = [r.priority for r in rules if r.action == ALLOW and r.covers(protocol, first, last, wanted)]
        best = min(allows) if allows else None
        if any(r.action == DENY and r.touches(protocol, first, last, wanted, senders)
               and (best is None or r.priority <= best)
               for r in rules):
            return DENY, False
        return (ALLOW, False) if best is not None else (NEXT, False)
    passed_on = False
    for rule in sorted(rules, key=lambda r: (r.priority, r.action != DENY)):
        if not rule.touches(protocol, first, last, wanted, senders):
            continue
        if rule.action == DENY:
            return DENY, passed_on
        whole = rule.covers(protocol, first, last, wanted)
        if rule.action == ALLOW and whole:
            return ALLOW, passed_on
        if rule.action == NEXT:
            if whole:
                return NEXT, False
            passed_on = True
    return NEXT, passed_on


@dataclass(frozen=True)
class Bound:
    """The secure tags bound to one VM by TagBinding/LocationTagBinding resources, and the bindings whose tag value
    is not known at preview."""

    tags: frozenset[str] = frozenset()
    unknown: tuple[str, ...] = ()


def _tag_bindings(resources: Sequence[Any]) -> dict[str, Bound]:
    """VM urn -> the secure tags bound to it: each binding paired with its VM by reference (its `parent` holds the
    VM's numeric id, so the engine's dependency pairs it), its `tagValue` the tag value's name ("tagValues/N")."""
    vms = [r for r in resources if r.resource_type in (INSTANCE, INSTANCE_FROM_TEMPLATE, INSTANCE_FROM_MACHINE_IMAGE)]
    found: dict[str, Bound] = {}
    for binding in resources:
        if binding.resource_type not in TAG_BINDINGS:
            continue
        parent = known(lambda b=binding: b.props.get("parent"))
        value = known(lambda b=binding: b.props.get("tagValue"), UNKNOWN)
        for vm in referenced(binding, ["parent"], [parent], vms):
            was = found.get(vm.urn, Bound())
            found[vm.urn] = Bound(was.tags | ({str(value)} if value is not UNKNOWN and value else set()),
                                  was.unknown + ((binding.name,) if value is UNKNOWN else ()))
    return found
