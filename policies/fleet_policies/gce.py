"""Reading Compute Engine resources as the policy engine passes them: camelCase properties, possibly proxied."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from fleet import pilot
from fleet.machine_types import lookup

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
    role of "swarm\n" boots a swarm host, so every swarm rule must see it as one)."""
    return str(metadata.get(key) or "").strip()


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


def applies_to(rule: Mapping[str, Any], tags: Sequence[str]) -> bool:
    """An enabled INGRESS rule with no target tags applies to every VM; else to VMs sharing a tag."""
    if truthy(rule.get("disabled", False)) or not is_ingress(rule):
        return False
    targets = list(rule.get("targetTags") or [])
    if rule.get("targetServiceAccounts"):
        return False  # matched by service account, which this check does not resolve
    return not targets or bool(set(targets) & set(tags))
