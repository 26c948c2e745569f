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
stack's projects (the stack cannot see the resource hierarchy). How each rule reads is firewall_rules.py's."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import facts as pilot
from .firewall_rules import (
    ALLOW,
    DENY,
    NEXT,
    Rule,
    Senders,
    Target,
    policy_rule,
    priority,
    vpc_rules,
)
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
    referenced,
)
from .network import (
    NetworkRef,
    Networks,
    network_ref,
    project_of,
)
from .preview import UNKNOWN, Plain


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

    def __init__(self, resources: Sequence[Any], networks: Networks, senders: Senders | None = None) -> None:
        self._networks = networks
        self.senders = senders or Senders()
        # rules with a value not known at preview, each set aside alone
        self.unknown: list[UnknownRule] = []
        self._vpc = [rule for r in resources if r.resource_type == FIREWALL for rule in self._read(r, vpc_rules)]
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
                made = self._read(r, policy_rule, {"firewallPolicy"} if paired else set(),
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
            made += policy_rule(policy, rule)
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
