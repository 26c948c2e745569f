"""Reading Compute Engine resources as the policy engine passes them (camelCase properties, possibly proxied): the
resource types, a VM's metadata as the VM reads it, and the effective VMs of a stack (groups overlaid on their
templates). How firewall rules admit traffic is firewall.py's."""

from __future__ import annotations

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


def last_name(link: Any) -> str:
    """The name at the end of a self link or URL (or the name itself)."""
    return str(link or "").rstrip("/").rsplit("/", 1)[-1]


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
        name = last_name((version or {}).get("instanceTemplate") if isinstance(version, Mapping) else None)
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
            groups[last_name(r.props.get("name") or r.name)] = (r, template)
            overlay = metadata_of(r.resource_type, r.props)
            if overlay:
                yield EffectiveVm(r.name, r.urn, template.props,
                                  _overlay(metadata_of(template.resource_type, template.props), overlay))
    for r in resources:
        if r.resource_type in (PER_INSTANCE_CONFIG, REGION_PER_INSTANCE_CONFIG):
            manager = r.props.get("instanceGroupManager") or r.props.get("regionInstanceGroupManager")
            found = groups.get(last_name(manager))
            if found is None:
                continue
            group, template = found
            metadata = _overlay(_overlay(metadata_of(template.resource_type, template.props),
                                         metadata_of(group.resource_type, group.props)),
                                metadata_of(r.resource_type, r.props))
            yield EffectiveVm(r.name, r.urn, template.props, metadata)
