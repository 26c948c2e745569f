"""The network model: the project a resource is in, the VPC network a VM or a rule is on (a project and a name,
from a self link, or a name read in the resource's own project), and the firewall policies attached to a network
or above it, each paired by reference.

A resource's project is its `project` property, else its provider's (an explicit provider resource, or the default
provider made from the stack's `gcp:project`), else not known (""). Two networks are the same when their names
match and their projects match or one is not known. A VM's network is its interface's `network`, else that of the
subnetwork it names (a subnetwork of this stack, found by reference), else, with neither set, its project's
`default` network (the API's default). A VM on a subnetwork this stack does not declare (a Shared VPC host's) is
on a network the stack cannot name: None."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .gce import NETWORK, SUBNETWORK, known, link_of, referenced
from .preview import UNKNOWN

# A network's `networkFirewallPolicyEnforcementOrder` when unset (the API's default): VPC rules first.
DEFAULT_ENFORCEMENT_ORDER = "AFTER_CLASSIC_FIREWALL"

# Links as the API takes them, whole or partial (no project: the referrer's, as the API resolves it)
_NETWORK_LINK = re.compile(r"^(?:projects/([^/]+)/)?global/networks/([^/]+)$")
_SUBNET_LINK = re.compile(r"^(?:projects/([^/]+)/)?regions/([^/]+)/subnetworks/([^/]+)$")


def project_of(resource: Any) -> str:
    """The project RESOURCE is in: its own `project`, else its provider's; "" when neither is known."""
    own = known(lambda: resource.props.get("project"))
    if isinstance(own, str) and own:
        return own
    provider = getattr(resource, "provider", None)
    props = getattr(provider, "props", None)
    value = known(lambda: props.get("project")) if props is not None else None
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class NetworkRef:
    """A VPC network: its project ("" when not known) and its name."""

    project: str
    name: str

    def same(self, other: NetworkRef) -> bool:
        return self.name == other.name and (self.project == other.project or not self.project or not other.project)

    def __str__(self) -> str:
        return f"{self.project}/{self.name}" if self.project else self.name


def network_ref(value: Any, project: str) -> NetworkRef | None:
    """The network a `network` property names: a self link (with its project), or a name in PROJECT."""
    if value is UNKNOWN or not isinstance(value, str) or not value.strip():
        return None
    link = link_of(value)
    match = _NETWORK_LINK.match(link)
    if match:
        return NetworkRef(match.group(1) or project, match.group(2))
    return NetworkRef(project, link.rsplit("/", 1)[-1]) if "/" not in link else None


class Networks:
    """The stack's networks and subnetworks, to find the network a VM is on and the enforcement order of its
    firewall policies."""

    def __init__(self, resources: Sequence[Any]) -> None:
        self._subnets = [r for r in resources if r.resource_type == SUBNETWORK]
        self._networks = [r for r in resources if r.resource_type == NETWORK]

    def subnet(self, vm_resource: Any, value: Any, project: str) -> Any | None:
        """The declared subnetwork a VM's interface names: by reference (its self link or id; or the project,
        region and name a link spells, as the API resolves it); by name in the VM's project when it gives only a
        name; else the one the engine says the interfaces took their value from."""
        if value is UNKNOWN or not isinstance(value, str) or not value:
            return None
        link = link_of(value)
        spelled = _SUBNET_LINK.match(link)
        for subnet in self._subnets:
            name = known(lambda s=subnet: s.props.get("name"))
            if spelled and name == spelled.group(3) and \
                    known(lambda s=subnet: s.props.get("region")) in (spelled.group(2), None) and \
                    project_of(subnet) in (spelled.group(1) or project, ""):
                return subnet
            if "/" not in link and name == link and project_of(subnet) in (project, ""):
                return subnet
        found = referenced(vm_resource, ["networkInterfaces"], [value], self._subnets) if vm_resource else []
        return found[0] if found else None

    def of_vm(self, resource: Any, props: Mapping[str, Any], project: str) -> NetworkRef | None:
        """The network a VM's first interface is on (see the module docstring); None when the stack cannot say."""
        nics = props.get("networkInterfaces")
        if nics is UNKNOWN:
            return None
        nic = nics[0] if isinstance(nics, list) and nics and isinstance(nics[0], Mapping) else {}
        if nic.get("network") not in (None, ""):
            return network_ref(nic.get("network"), project)
        if nic.get("subnetwork") not in (None, ""):
            where = _subnet_project(nic, project)
            subnet = self.subnet(resource, nic.get("subnetwork"), where)
            if subnet is None:
                return None
            return network_ref(known(lambda: subnet.props.get("network")), project_of(subnet) or where)
        return NetworkRef(project, "default") if isinstance(nics, list) else None

    def subnet_range(self, resource: Any, props: Mapping[str, Any], project: str) -> str | None:
        """The primary range of the declared subnetwork a VM's first interface is on."""
        nics = props.get("networkInterfaces")
        nic = nics[0] if isinstance(nics, list) and nics and isinstance(nics[0], Mapping) else {}
        subnet = self.subnet(resource, nic.get("subnetwork"), _subnet_project(nic, project))
        value = known(lambda: subnet.props.get("ipCidrRange")) if subnet is not None else None
        return value if isinstance(value, str) else None

    def enforcement_order(self, ref: NetworkRef) -> str:
        for network in self._networks:
            name = known(lambda n=network: n.props.get("name")) or network.name
            if ref.same(NetworkRef(project_of(network), str(name))):
                order = known(lambda n=network: n.props.get("networkFirewallPolicyEnforcementOrder"))
                return str(order or DEFAULT_ENFORCEMENT_ORDER)
        return DEFAULT_ENFORCEMENT_ORDER


def _subnet_project(nic: Mapping[str, Any], project: str) -> str:
    """The project an interface's subnetwork is read in: its `subnetworkProject` (a Shared VPC host's), else the
    VM's."""
    value = nic.get("subnetworkProject")
    return value if isinstance(value, str) and value else project


def zone_region(zone: Any) -> str:
    """us-central1-a -> us-central1."""
    return str(zone).rsplit("-", 1)[0] if isinstance(zone, str) and zone.count("-") >= 2 else ""
