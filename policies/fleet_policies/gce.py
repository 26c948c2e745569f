"""Reading Compute Engine resources as the policy engine passes them (camelCase properties, possibly proxied): the
resource types, a VM's metadata as the VM reads it, references between resources (never names), health-check
probes and groups' zones with the API's defaults. What each VM runs is vms.py's; how traffic reaches it is
firewall.py's."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy.proxy import UnknownValueError

from . import facts as pilot
from .facts import lookup

INSTANCE = "gcp:compute/instance:Instance"
INSTANCE_TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
REGION_INSTANCE_TEMPLATE = "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate"
INSTANCE_FROM_TEMPLATE = "gcp:compute/instanceFromTemplate:InstanceFromTemplate"
INSTANCE_FROM_MACHINE_IMAGE = "gcp:compute/instanceFromMachineImage:InstanceFromMachineImage"
# An image of a whole VM (its machine type, metadata, disks, network), taken from `sourceInstance`
MACHINE_IMAGE = "gcp:compute/machineImage:MachineImage"
MIG = "gcp:compute/instanceGroupManager:InstanceGroupManager"
REGION_MIG = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
PER_INSTANCE_CONFIG = "gcp:compute/perInstanceConfig:PerInstanceConfig"
REGION_PER_INSTANCE_CONFIG = "gcp:compute/regionPerInstanceConfig:RegionPerInstanceConfig"
DISK = "gcp:compute/disk:Disk"
REGION_DISK = "gcp:compute/regionDisk:RegionDisk"
HEALTH_CHECK = "gcp:compute/healthCheck:HealthCheck"
REGION_HEALTH_CHECK = "gcp:compute/regionHealthCheck:RegionHealthCheck"
FIREWALL = "gcp:compute/firewall:Firewall"
SUBNETWORK = "gcp:compute/subnetwork:Subnetwork"
NETWORK = "gcp:compute/network:Network"
NETWORK_POLICY = "gcp:compute/networkFirewallPolicy:NetworkFirewallPolicy"
REGION_NETWORK_POLICY = "gcp:compute/regionNetworkFirewallPolicy:RegionNetworkFirewallPolicy"
NETWORK_POLICY_RULE = "gcp:compute/networkFirewallPolicyRule:NetworkFirewallPolicyRule"
REGION_NETWORK_POLICY_RULE = "gcp:compute/regionNetworkFirewallPolicyRule:RegionNetworkFirewallPolicyRule"
NETWORK_POLICY_ASSOCIATION = "gcp:compute/networkFirewallPolicyAssociation:NetworkFirewallPolicyAssociation"
REGION_NETWORK_POLICY_ASSOCIATION = \
    "gcp:compute/regionNetworkFirewallPolicyAssociation:RegionNetworkFirewallPolicyAssociation"
HIERARCHICAL_POLICY = "gcp:compute/firewallPolicy:FirewallPolicy"
HIERARCHICAL_POLICY_RULE = "gcp:compute/firewallPolicyRule:FirewallPolicyRule"
HIERARCHICAL_POLICY_ASSOCIATION = "gcp:compute/firewallPolicyAssociation:FirewallPolicyAssociation"
# Firewall policies that declare their rules inline (`rules`), hierarchical, global and regional
WITH_RULES = ("gcp:compute/firewallPolicyWithRules:FirewallPolicyWithRules",
              "gcp:compute/networkFirewallPolicyWithRules:NetworkFirewallPolicyWithRules",
              "gcp:compute/regionNetworkFirewallPolicyWithRules:RegionNetworkFirewallPolicyWithRules")
# Secure tags bound to a resource (a VM: firewall-policy rules target it by them)
TAG_BINDINGS = ("gcp:tags/tagBinding:TagBinding", "gcp:tags/locationTagBinding:LocationTagBinding")
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


# IP protocol numbers Compute Engine takes in place of a protocol's name (IANA's assignments)
PROTOCOL_NUMBERS = {"1": "icmp", "4": "ipip", "6": "tcp", "17": "udp", "50": "esp", "51": "ah", "132": "sctp"}


def protocol_name(value: Any) -> str:
    """A firewall protocol as a name: "tcp", "TCP" and "6" are one protocol to Compute Engine."""
    text = str(value if value is not None else "").strip().lower()
    return PROTOCOL_NUMBERS.get(text, text)


def truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def last_name(link: Any) -> str:
    """The name at the end of a self link or URL (or the name itself)."""
    return str(link or "").rstrip("/").rsplit("/", 1)[-1]


TEMPLATE_TYPES = (INSTANCE_TEMPLATE, REGION_INSTANCE_TEMPLATE)
# the forms a reference to a resource takes: a full API URL, or the path after it (projects/P/...)
_API_PREFIX = re.compile(r"^https://(?:www|compute)\.googleapis\.com/compute/(?:v1|beta)/")


def known(read: Callable[[], Any], default: Any = None) -> Any:
    """A property value, or DEFAULT where the engine does not know it yet (at preview, reading an unknown value
    raises, which would otherwise abort the whole rule for every VM)."""
    try:
        return read()
    except UnknownValueError:
        return default


# Resources a reference may name by their API name: a group (a per-instance config's `instanceGroupManager`), a
# network firewall policy (a rule's or an association's `firewallPolicy`, resolved in its project), a hierarchical
# one (its name is the number the API gives it).
NAMED_BY_NAME = (MIG, REGION_MIG, NETWORK_POLICY, REGION_NETWORK_POLICY, HIERARCHICAL_POLICY)


def link_of(value: Any) -> str:
    """A reference in the form it is compared in: the path after the API prefix (projects/P/...), or a name."""
    return _API_PREFIX.sub("", value.strip()) if isinstance(value, str) else ""


# How a link to a resource is spelled by hand (what the API's self link holds after its prefix): a reference may be
# written so instead of taken from the resource, and then the engine records no dependency to pair it by
SPELLED = {
    INSTANCE: "projects/{project}/zones/{zone}/instances/{name}",
    INSTANCE_TEMPLATE: "projects/{project}/global/instanceTemplates/{name}",
    REGION_INSTANCE_TEMPLATE: "projects/{project}/regions/{region}/instanceTemplates/{name}",
    MACHINE_IMAGE: "projects/{project}/global/machineImages/{name}",
}
# Resources a reference may name by their plain name (the provider resolves it in the referrer's project)
NAMED_PLAINLY = (INSTANCE_TEMPLATE, REGION_INSTANCE_TEMPLATE, MACHINE_IMAGE, INSTANCE)


def _links_of(resource: Any) -> set[str]:
    """What a reference to RESOURCE may hold: its self link, its unique self link (the provider's recommendation
    for a group's template), its id; for a group also its name, which is what a per-instance config's
    `instanceGroupManager` holds (the provider resolves it in the config's own zone or region); for a template,
    a machine image or an instance its link spelled from its project, place and name, and its plain name."""
    kind = resource.resource_type
    keys = ["selfLink", "selfLinkUnique", "id"] + (["name"] if kind in NAMED_BY_NAME + NAMED_PLAINLY else [])
    links = {link_of(known(lambda k=k: resource.props.get(k))) for k in keys}
    if kind in SPELLED:
        from .network import project_of  # network.py reads its references with this module's helpers

        fields = {"project": project_of(resource)}
        for key in ("zone", "region", "name"):
            value = known(lambda k=key: resource.props.get(k))
            fields[key] = value if isinstance(value, str) else ""
        if all(fields[f] for f in ("project", "zone", "region", "name") if "{" + f + "}" in SPELLED[kind]):
            spelled = SPELLED[kind].format(**fields)
            links |= {spelled, spelled.split("/", 2)[2]}  # whole, and partial (the referrer's project)
    return links - {""}


def referenced(resource: Any, props: Sequence[str], values: Sequence[Any], candidates: Iterable[Any]) -> list[Any]:
    """The CANDIDATES that RESOURCE refers to by reference, never by name: the ones whose link the VALUES (of its
    properties PROPS) hold; where no value is known yet (a new or replaced template's link is computed at
    preview), the ones the engine says those properties took their value from (propertyDependencies)."""
    candidates = list(candidates)
    wanted = {link_of(v) for v in values} - {""}
    found = [c for c in candidates if wanted & _links_of(c)]
    if found:
        return found
    urns = {c.urn for c in candidates}
    deps = getattr(resource, "property_dependencies", None) or {}
    return [d for prop in props for d in deps.get(prop, []) if d.urn in urns]


def templates_of(group: Any, templates: Iterable[Any]) -> list[Any]:
    """The instance templates (zonal or regional) a group's versions run, by reference; none when they are not in
    this stack."""
    versions = [v for v in known(lambda: list(group.props.get("versions") or []), []) if isinstance(v, Mapping)]
    links = [known(lambda v=v: v.get("instanceTemplate")) for v in versions]  # unknown: a new template's
    return referenced(group, ["versions"], links, templates)


# Compute Engine's defaults for a health check's probe when the program leaves `port` unset (the API's, not the
# provider's: the provider sends nothing). gRPC has no default port.
PROBE_DEFAULT_PORTS = {"httpHealthCheck": ("HTTP", 80), "httpsHealthCheck": ("HTTPS", 443),
                       "http2HealthCheck": ("HTTP2", 443), "tcpHealthCheck": ("TCP", 80),
                       "sslHealthCheck": ("SSL", 443), "grpcHealthCheck": ("GRPC", None)}


@dataclass(frozen=True)
class Probe:
    """What a health check sends: its protocol, its port (None: a named port the group does not define, or a value
    not known at preview, then `known` is False), its request path (HTTP kinds; "/" by default)."""

    protocol: str
    port: int | None
    path: str | None
    port_text: str
    known: bool = True


def probe_of(check: Mapping[str, Any], named_ports: Any) -> Probe | None:
    """The probe of a HealthCheck or RegionHealthCheck's properties, with the API's defaults; None: no probe block."""
    for block_name, (protocol, default) in PROBE_DEFAULT_PORTS.items():
        block = known(lambda b=block_name: check.get(b))
        if isinstance(block, Mapping):
            return _probe(protocol, default, block, named_ports)
    return None


def _probe(protocol: str, default: int | None, block: Mapping[str, Any], named_ports: Any) -> Probe:
    path = str(known(lambda: block.get("requestPath"), "/") or "/") if protocol.startswith("HTTP") else None
    spec = str(known(lambda: block.get("portSpecification")) or "").upper()
    name = known(lambda: block.get("portName"))
    raw = known(lambda: block.get("port"), "?")
    if raw == "?" or (spec == "USE_NAMED_PORT" and name is None):
        return Probe(protocol, None, path, "not known at preview", known=False)
    if spec == "USE_NAMED_PORT" or (not spec and name and raw is None):
        ports = {str(known(lambda p=p: p.get("name"))): known(lambda p=p: p.get("port"))
                 for p in known(lambda: list(named_ports or []), []) if isinstance(p, Mapping)}
        port = ports.get(str(name))
        where = f" ({port})" if port is not None else ", which the group does not define"
        return Probe(protocol, _port(port), path, f"named port {name!r}{where}")
    if raw is None:
        return Probe(protocol, default, path, f"{default} (the API's default: no port set)")
    return Probe(protocol, _port(raw), path, str(_port(raw) if _port(raw) is not None else raw))


def _port(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def zones_of(group: Any) -> int:
    """How many zones a group runs in: a zonal group 1; a regional group its distribution policy's zones, else
    the API's choice of 3 zones of its region."""
    if group.resource_type != REGION_MIG:
        return 1
    zones = known(lambda: group.props.get("distributionPolicyZones"))
    return len(zones) if isinstance(zones, Sequence) and not isinstance(zones, str) and zones else 3
