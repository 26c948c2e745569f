"""The VM model: what each VM of a stack will run, built from the resource graph. Every rule that judges VMs asks
this model rather than reading properties itself.

A VM is an instance, a template, an instance made from a template or a machine image, or the VMs of a managed group
(zonal or regional) as its all-instances config and per-instance configs change what its templates' VMs see. Groups,
per-instance configs and instances from a template are paired with their templates by reference (gce.referenced),
never by name. Each resource is read once into plain data (preview.Plain): a value not known at preview becomes
preview.UNKNOWN, and its path is in `EffectiveVm.unknown`.

How firewall rules and policies admit traffic to a VM is firewall.py's; the network a VM is on is network.py's."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import facts as pilot
from .gce import (
    DISK,
    INSTANCE,
    INSTANCE_FROM_MACHINE_IMAGE,
    INSTANCE_FROM_TEMPLATE,
    MACHINE_IMAGE,
    MIG,
    PER_INSTANCE_CONFIG,
    REGION_DISK,
    REGION_MIG,
    REGION_PER_INSTANCE_CONFIG,
    TEMPLATE_TYPES,
    VM_TYPES,
    known,
    link_of,
    metadata_value,
    referenced,
    templates_of,
)
from .network import NetworkRef, Networks, project_of
from .preview import NEEDS, UNKNOWN, Plain, unknown_of


@dataclass(frozen=True)
class EffectiveVm:
    """A VM as it will run: the properties it is made with (a template's under an instance's own), the metadata it
    finally sees (each overlay over the one before, agent targets included), and the paths of the values among
    them not known at preview. `urn` and `name` are the resource a violation names: the instance, template, group
    or per-instance config."""

    name: str
    urn: str
    kind: str
    props: Mapping[str, Any]
    metadata: Mapping[str, Any]
    unknown: frozenset[str] = field(default_factory=frozenset)
    project: str = ""  # "" when not known
    # the VPC network its first interface is on; None when the stack cannot say (then "network" is in `unknown`)
    network: NetworkRef | None = None
    # attached disk index -> the properties of the disk resource it attaches (found by reference), where declared
    disk_sources: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return metadata_value(self.metadata, pilot.MetadataKey.ROLE)

    @property
    def role_unknown(self) -> bool:
        """Its role is not known at preview (its whole metadata, or the role's value)."""
        return any(u in ("metadata", f"metadata.{pilot.MetadataKey.ROLE}") for u in self.unknown)

    @property
    def interfaces(self) -> list[Mapping[str, Any]]:
        nics = self.props.get("networkInterfaces")
        return [n for n in nics if isinstance(n, Mapping)] if isinstance(nics, list) else []

    @property
    def disks(self) -> list[tuple[str, Mapping[str, Any]]]:
        """(name, settings) of every disk it is made with: an instance's boot and attached disks, a template's."""
        found: list[tuple[str, Mapping[str, Any]]] = []
        boot = self.props.get("bootDisk")
        if isinstance(boot, Mapping):
            found.append(("boot disk", boot))
        for key, label in (("attachedDisks", "attached disk"), ("disks", "disk")):
            disks = self.props.get(key)
            for i, disk in enumerate(disks if isinstance(disks, list) else []):
                if isinstance(disk, Mapping):
                    source = self.disk_sources.get(i, {}) if key == "attachedDisks" else {}
                    found.append((f"{label} {disk.get('deviceName') or i}", {**source, **disk}))
        return found

    def health_port(self, default: int) -> int | None:
        """The port its supervisor serves /healthz on: its pilot-health-port, else DEFAULT; None when malformed."""
        text = metadata_value(self.metadata, pilot.MetadataKey.HEALTH_PORT)
        return (int(text) if text.isdigit() else None) if text else default

    @property
    def machine_type(self) -> str:
        value = self.props.get("machineType")
        return "" if value is UNKNOWN else str(value or "")

    def unknown_for(self, rule: str) -> list[str]:
        """What RULE reads of this VM (preview.NEEDS) that is not known at preview: RULE skips the VM when any."""
        return unknown_of(self.unknown, NEEDS[rule])


def _overlay(base: Mapping[str, Any], extra: Mapping[str, Any]) -> Mapping[str, Any]:
    return {**base, **extra}


def _overlaid_unknown(base: frozenset[str], extra_md: Mapping[str, Any],
                      extra_unknown: frozenset[str]) -> frozenset[str]:
    """An overlay replaces the values it sets: the base's unknown metadata values it sets are known again."""
    kept = {u for u in base if not (u.startswith("metadata.") and u.split(".", 2)[1] in extra_md
                                    and extra_md[u.split(".", 2)[1]] is not UNKNOWN)}
    return frozenset(kept | extra_unknown)


def effective_vms(resources: Sequence[Any]) -> Iterator[EffectiveVm]:
    """Every VM kind with what it will run, its project and its network; see the module docstring."""
    nets = Networks(resources)
    by_urn = {r.urn: r for r in resources}
    disks = [r for r in resources if r.resource_type in (DISK, REGION_DISK)]
    for vm, made_from in _vms(resources):
        yield placed(vm, made_from or by_urn[vm.urn], nets, disks)


def placed(vm: EffectiveVm, made_from: Any, nets: Networks, disks: Sequence[Any] = ()) -> EffectiveVm:
    """VM with its project and network (those of the resource its interfaces come from: its own, or its
    template's), and the disk resources it attaches."""
    project = project_of(made_from)
    network = nets.of_vm(made_from, vm.props, project)
    unknown = vm.unknown | ({"network"} if network is None else set())
    return EffectiveVm(vm.name, vm.urn, vm.kind, vm.props, vm.metadata, frozenset(unknown), project, network,
                       _disk_sources(made_from, vm.props, disks))


_DISK_LINK = re.compile(r"^projects/([^/]+)/(zones|regions)/([^/]+)/disks/([^/]+)$")


def _disk_sources(resource: Any, props: Mapping[str, Any], disks: Sequence[Any]) -> dict[int, Mapping[str, Any]]:
    """Attached disk index -> the declared disk it attaches: by the project, zone or region and name its `source`
    link spells, else by reference (self link, id), else, for a VM that attaches one disk, the one disk the engine
    says `attachedDisks` took its value from."""
    attached = props.get("attachedDisks")
    found: dict[int, Mapping[str, Any]] = {}
    for i, entry in enumerate(attached if isinstance(attached, list) else []):
        source = entry.get("source") if isinstance(entry, Mapping) else None
        link = _DISK_LINK.match(link_of(source)) if isinstance(source, str) else None
        match = [d for d in disks if link and known(lambda d=d: d.props.get("name")) == link.group(4)
                 and known(lambda d=d: d.props.get("zone") or d.props.get("region")) in (link.group(3), None)]
        if not match and (len(attached) == 1 or link):  # a source not known at preview: the engine's dependencies
            match = referenced(resource, ["attachedDisks"], [None if source is UNKNOWN else source], disks)
        if len(match) == 1:
            found[i] = Plain.of(match[0]).props
    return found


def _vms(resources: Sequence[Any]) -> Iterator[tuple[EffectiveVm, Any]]:
    """Every VM kind with what it will run, and the resource its properties come from (None: its own)."""
    read = {r.urn: Plain.of(r) for r in resources
            if r.resource_type in (*VM_TYPES, MIG, REGION_MIG, PER_INSTANCE_CONFIG, REGION_PER_INSTANCE_CONFIG)}
    templates = [r for r in resources if r.resource_type in TEMPLATE_TYPES]
    groups: dict[str, tuple[Any, list[Any]]] = {}
    for r in resources:
        if r.resource_type in (INSTANCE_FROM_TEMPLATE, INSTANCE_FROM_MACHINE_IMAGE):
            own = read[r.urn]
            sources = _made_from(r, resources, templates)
            for template in sources[:1] or [None]:
                base = read[template.urn] if template is not None else Plain(None, {}, frozenset())
                base_md, base_unknown = base.metadata() if template is not None else ({}, frozenset())
                own_md, own_md_unknown = own.metadata()
                # unset (None) properties are the template's; metadata is overlaid key by key
                props = {**base.props, **{k: v for k, v in own.props.items() if v is not None and k != "metadata"}}
                unknown = {u for u in base.unknown if not u.startswith("metadata")
                           and own.props.get(u.split(".", 1)[0]) is None}
                unknown |= {u for u in own.unknown if not u.startswith("metadata")}
                yield EffectiveVm(r.name, r.urn, r.resource_type, props, _overlay(base_md, own_md),
                                  _overlaid_unknown(base_unknown, own_md, own_md_unknown) | unknown), \
                    (r if own.props.get("networkInterfaces") is not None or template is None else template)
        elif r.resource_type in VM_TYPES:
            own = read[r.urn]
            md, md_unknown = own.metadata()
            yield EffectiveVm(r.name, r.urn, r.resource_type, own.props, md,
                              frozenset(u for u in own.unknown if not u.startswith("metadata")) | md_unknown), None
        elif r.resource_type in (MIG, REGION_MIG):
            ran = templates_of(r, templates)
            groups[r.urn] = (r, ran)
            overlay, overlay_unknown = read[r.urn].metadata()
            for template in ran if overlay or overlay_unknown else ():
                yield _group_vm(r.name, r.urn, r.resource_type, read, template, [(overlay, overlay_unknown)]), template
    for r in resources:
        if r.resource_type in (PER_INSTANCE_CONFIG, REGION_PER_INSTANCE_CONFIG):
            prop = "instanceGroupManager" if r.resource_type == PER_INSTANCE_CONFIG else "regionInstanceGroupManager"
            where = known(lambda r=r: r.props.get("zone") or r.props.get("region"))
            managers = [g for g in referenced(r, [prop], [known(lambda r=r, p=prop: r.props.get(p))],
                                              [g for g, _ in groups.values()])
                        if not where or (known(lambda g=g: g.props.get("zone") or g.props.get("region")) or where)
                        == where]
            for group in managers:
                for template in groups[group.urn][1]:
                    yield _group_vm(r.name, r.urn, r.resource_type, read, template,
                                    [read[group.urn].metadata(), read[r.urn].metadata()]), template


def _made_from(vm: Any, resources: Sequence[Any], templates: Sequence[Any]) -> list[Any]:
    """What an instance made from a template or a machine image takes its properties from: the template, or the
    instance the machine image was taken from (its machine type, metadata, network), by reference."""
    if vm.resource_type == INSTANCE_FROM_TEMPLATE:
        return referenced(vm, ["sourceInstanceTemplate"], [known(lambda: vm.props.get("sourceInstanceTemplate"))],
                          templates)
    images = referenced(vm, ["sourceMachineImage"], [known(lambda: vm.props.get("sourceMachineImage"))],
                        [r for r in resources if r.resource_type == MACHINE_IMAGE])
    instances = [r for r in resources if r.resource_type == INSTANCE]
    return [source for image in images[:1] for source in referenced(
        image, ["sourceInstance"], [known(lambda i=image: i.props.get("sourceInstance"))], instances)]


def _group_vm(name: str, urn: str, kind: str, read: Mapping[str, Plain], template: Any,
              overlays: list[tuple[Mapping[str, Any], frozenset[str]]]) -> EffectiveVm:
    base = read.get(template.urn) or Plain.of(template)
    metadata, unknown = base.metadata()
    for extra, extra_unknown in overlays:
        unknown = _overlaid_unknown(unknown, extra, extra_unknown)
        metadata = _overlay(metadata, extra)
    return EffectiveVm(name, urn, kind, base.props, metadata,
                       frozenset(u for u in base.unknown if not u.startswith("metadata")) | unknown)


@dataclass(frozen=True)
class GroupVms:
    """The VMs one version of a managed group runs: the group, the template (by reference), and what they run
    (the template's properties, its metadata overlaid by the group's all-instances config)."""

    group: Any
    template: Any
    vm: EffectiveVm

    @property
    def metadata(self) -> Mapping[str, Any]:
        return self.vm.metadata


def group_vms(resources: Sequence[Any]) -> Iterator[GroupVms]:
    """Every (group, template) pair of the stack, zonal and regional, paired by reference."""
    templates = [r for r in resources if r.resource_type in TEMPLATE_TYPES]
    nets = Networks(resources)
    for group in resources:
        if group.resource_type in (MIG, REGION_MIG):
            read = {group.urn: Plain.of(group)}
            for template in templates_of(group, templates):
                read[template.urn] = Plain.of(template)
                vm = _group_vm(group.name, group.urn, group.resource_type, read, template, [read[group.urn].metadata()])
                yield GroupVms(group, template, placed(vm, template, nets))
