"""Reading Compute Engine resources as the policy engine passes them: camelCase properties, possibly proxied."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import facts as pilot
from .facts import lookup

INSTANCE = "gcp:compute/instance:Instance"
INSTANCE_TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
REGION_INSTANCE_TEMPLATE = "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate"
INSTANCE_FROM_TEMPLATE = "gcp:compute/instanceFromTemplate:InstanceFromTemplate"
INSTANCE_FROM_MACHINE_IMAGE = "gcp:compute/instanceFromMachineImage:InstanceFromMachineImage"
MIG = "gcp:compute/instanceGroupManager:InstanceGroupManager"
REGION_MIG = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
PER_INSTANCE_CONFIG = "gcp:compute/perInstanceConfig:PerInstanceConfig"
REGION_PER_INSTANCE_CONFIG = "gcp:compute/regionPerInstanceConfig:RegionPerInstanceConfig"
FIREWALL = "gcp:compute/firewall:Firewall"
SUBNETWORK = "gcp:compute/subnetwork:Subnetwork"
PROJECT_METADATA = "gcp:compute/projectMetadata:ProjectMetadata"
PROJECT_METADATA_ITEM = "gcp:compute/projectMetadataItem:ProjectMetadataItem"
# Zone-level metadata: it overrides the project's metadata for every VM in its zone.
INSTANCE_SETTINGS = "gcp:compute/instanceSettings:InstanceSettings"

# Resources that become VMs and take `metadata` (and some `metadataStartupScript`) directly.
VM_TYPES = (INSTANCE, INSTANCE_TEMPLATE, REGION_INSTANCE_TEMPLATE, INSTANCE_FROM_TEMPLATE,
            INSTANCE_FROM_MACHINE_IMAGE)
# Where MIGs and their stateful configs carry metadata.
NESTED_METADATA = {
    MIG: ("allInstancesConfig", "metadata"),
    REGION_MIG: ("allInstancesConfig", "metadata"),
    PER_INSTANCE_CONFIG: ("preservedState", "metadata"),
    REGION_PER_INSTANCE_CONFIG: ("preservedState", "metadata"),
}
CUSTOM_TYPE = re.compile(r"^(?:[a-z0-9]+-)?custom-(\d+)-(\d+)(?:-ext)?$")
WORLD = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def metadata_of(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any]:
    if resource_type in VM_TYPES:
        md = props.get("metadata")
    elif resource_type in NESTED_METADATA:
        outer, inner = NESTED_METADATA[resource_type]
        block = props.get(outer)
        md = block.get(inner) if isinstance(block, Mapping) else None
    else:
        md = None
    return md if isinstance(md, Mapping) else {}


def metadata_value(metadata: Mapping[str, Any], key: str) -> str:
    """A metadata value as the VM reads it: the startup script and the supervisor drop surrounding whitespace (a
    role of "swarm\n" boots a swarm host, so every swarm rule must see it as one). A renamed key is read under its
    old name when the new one is absent, as the VM reads it for that one release."""
    if key not in metadata and key in pilot.RENAMED:
        key = pilot.RENAMED[key]
    return str(metadata.get(key) or "").strip()


def agent_target(metadata: Mapping[str, Any]) -> tuple[int | None, str]:
    """The most agents a supervisor on this VM may run, and the raw value when one is not a whole number. For the one
    release a renamed key is read under both names, both count: supervisors that have not rebooted into the new VM
    contract still read the old name."""
    key = pilot.MetadataKey.TARGET_AGENTS
    names = [key, *([pilot.RENAMED[key]] if key in pilot.RENAMED else [])]
    texts = [str(metadata.get(name) or "").strip() for name in names if name in metadata] or [""]
    bad = next((text for text in texts if not text.isdigit()), None)
    return (None, bad) if bad is not None else (max(int(text) for text in texts), "")


def script_keys(metadata: Mapping[str, Any]) -> list[str]:
    """Metadata keys that make Compute Engine run a script on the VM (bypassing or doubling the project's)."""
    return sorted(k for k in metadata
                  if k in pilot.SCRIPT_METADATA_KEYS or k.startswith(pilot.SCRIPT_METADATA_PREFIXES)
                  or re.match(pilot.SCRIPT_METADATA_PATTERN, k))


def machine_memory_mb(machine_type: str) -> int | None:
    name = machine_type.rsplit("/", 1)[-1]
    known = lookup(name)
    if known:
        return known.memory_mb
    custom = CUSTOM_TYPE.match(name)
    return int(custom.group(2)) if custom else None


def truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "on")


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


def _last(link: Any) -> str:
    """The name at the end of a self link or URL (or the name itself)."""
    return str(link or "").rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Target:
    """What a firewall rule is matched against on one VM (or template): its network, tags, service accounts."""

    network: str
    tags: frozenset[str]
    service_accounts: frozenset[str]


def subnet_networks(resources: Iterable[Any]) -> dict[str, str]:
    """Subnetwork name -> network name, from the subnetworks declared in the stack."""
    return {_last(r.props.get("name") or r.name): _last(r.props.get("network")) for r in resources
            if r.resource_type == SUBNETWORK}


def target_of(props: Mapping[str, Any], subnets: Mapping[str, str]) -> Target:
    nics = props.get("networkInterfaces") or []
    nic = nics[0] if nics and isinstance(nics[0], Mapping) else {}
    network = _last(nic.get("network")) or subnets.get(_last(nic.get("subnetwork")), "")
    account = props.get("serviceAccount")
    emails = {str(account.get("email"))} if isinstance(account, Mapping) and account.get("email") else set()
    return Target(network, frozenset(str(t) for t in props.get("tags") or []), frozenset(emails))


def applies_to(rule: Mapping[str, Any], target: Target) -> bool:
    """As Compute Engine matches an enabled INGRESS rule: in the VM's network (when both are known), then by
    target tags, else by target service accounts, else to every VM of the network."""
    if truthy(rule.get("disabled", False)) or not is_ingress(rule):
        return False
    network = _last(rule.get("network"))
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


@dataclass(frozen=True)
class EffectiveVm:
    """A VM as it will run: its own properties, with the metadata it will finally see. For a group's VMs that is
    the template's metadata, overlaid by the group's all-instances config and then a per-instance config (each
    overrides the one before, agent targets included)."""

    name: str
    urn: str
    props: Mapping[str, Any]
    metadata: Mapping[str, Any]


def template_of(group: Mapping[str, Any], templates: Iterable[Any]) -> Any:
    """The instance template a group's versions name (by its self link's last segment against each template's
    name or name prefix); None when it is not in this stack or not known yet."""
    for version in group.get("versions") or []:
        name = _last((version or {}).get("instanceTemplate") if isinstance(version, Mapping) else None)
        for template in templates:
            props = template.props
            prefix = str(props.get("namePrefix") or "")
            if name and (name == props.get("name") or (prefix and name.startswith(prefix))):
                return template
    return None


def _overlay(base: Mapping[str, Any], extra: Any) -> Mapping[str, Any]:
    return {**base, **extra} if isinstance(extra, Mapping) else base


def effective_vms(resources: Sequence[Any]) -> Iterator[EffectiveVm]:
    """Every VM kind with its own metadata, and every group whose all-instances config or per-instance configs
    change what its template's VMs see, as the VMs that result."""
    templates = [r for r in resources if r.resource_type in (INSTANCE_TEMPLATE, REGION_INSTANCE_TEMPLATE)]
    groups: dict[str, tuple[Any, Any]] = {}
    for r in resources:
        if r.resource_type in VM_TYPES:
            yield EffectiveVm(r.name, r.urn, r.props, metadata_of(r.resource_type, r.props))
        elif r.resource_type in (MIG, REGION_MIG):
            template = template_of(r.props, templates)
            if template is None:
                continue
            groups[_last(r.props.get("name") or r.name)] = (r, template)
            overlay = metadata_of(r.resource_type, r.props)
            if overlay:
                yield EffectiveVm(r.name, r.urn, template.props,
                                  _overlay(metadata_of(template.resource_type, template.props), overlay))
    for r in resources:
        if r.resource_type in (PER_INSTANCE_CONFIG, REGION_PER_INSTANCE_CONFIG):
            found = groups.get(_last(r.props.get("instanceGroupManager") or r.props.get("regionInstanceGroupManager")))
            if found is None:
                continue
            group, template = found
            metadata = _overlay(_overlay(metadata_of(template.resource_type, template.props),
                                         metadata_of(group.resource_type, group.props)),
                                metadata_of(r.resource_type, r.props))
            yield EffectiveVm(r.name, r.urn, template.props, metadata)
