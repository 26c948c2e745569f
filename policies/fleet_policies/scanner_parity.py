"""Advisories the usual Compute Engine scanners make, with their Checkov IDs (issue #22, scanner parity): OS Login
turned off on one VM, IP forwarding, a public IP where none is needed, disks without a customer key, a firewall
rule open on every port to the internet, the default network.

A public IP is needed by the fleet's own VMs: the rendezvous is reached at its external address by agents outside
the VPC, and swarm VMs download their pinned wheels through it (the fleet declares no Cloud NAT); other VMs are
judged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from . import facts as pilot
from .firewall import allowed, is_ingress, opens_to_world
from .gce import FIREWALL, last_name, metadata_value, truthy
from .hardening import ADVISORY, _vm_rule

NEEDS_PUBLIC_IP = (pilot.ROLE_RENDEZVOUS, pilot.ROLE_SWARM)
DISK_KEYS = ("diskEncryptionKey", "diskEncryptionKeyRaw", "diskEncryptionKeyRsa", "kmsKeySelfLink")


def _os_login_overridden(_props: Mapping[str, Any], md: Mapping[str, Any]) -> str | None:
    key = pilot.MetadataKey.OS_LOGIN
    return f"turns OS Login off for itself ({key}: {md.get(key)})" if key in md and not truthy(md.get(key)) else None


def _ip_forwarding(props: Mapping[str, Any], _md: Mapping[str, Any]) -> str | None:
    return "forwards IP packets it did not originate (canIpForward)" if truthy(props.get("canIpForward")) else None


def _public_ip(props: Mapping[str, Any], md: Mapping[str, Any]) -> str | None:
    if metadata_value(md, pilot.MetadataKey.ROLE) in NEEDS_PUBLIC_IP:
        return None
    nics = [n for n in props.get("networkInterfaces") or [] if isinstance(n, Mapping)]
    if any(n.get("accessConfigs") or n.get("ipv6AccessConfigs") for n in nics):
        return "has an external IP address; it is not a fleet VM that needs one"
    return None


def _disks(props: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(name, settings) of every disk a VM or template declares, with where its key would be."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    boot = props.get("bootDisk")
    if isinstance(boot, Mapping):
        found.append(("boot disk", boot))
    for i, disk in enumerate(props.get("attachedDisks") or []):
        if isinstance(disk, Mapping):
            found.append((f"attached disk {disk.get('deviceName') or i}", disk))
    for i, disk in enumerate(props.get("disks") or []):  # a template's
        if isinstance(disk, Mapping):
            found.append((f"disk {disk.get('deviceName') or i}", disk))
    return found


def _customer_key(props: Mapping[str, Any], _md: Mapping[str, Any]) -> str | None:
    plain = [name for name, disk in _disks(props) if not any(disk.get(k) for k in DISK_KEYS)]
    if plain:
        return f"{', '.join(plain)} encrypted with Google-managed keys only (no CSEK or CMEK)"
    return None


def _default_network(props: Mapping[str, Any], _md: Mapping[str, Any]) -> str | None:
    nics = [n for n in props.get("networkInterfaces") or [] if isinstance(n, Mapping)]
    if any(last_name(n.get("network")) == "default" or last_name(n.get("subnetwork")) == "default" for n in nics):
        return "runs on the project's default network (its firewall rules were made for anyone's VMs)"
    return None


os_login_not_overridden = _vm_rule(
    "os-login-not-overridden", "No VM turns OS Login off in its own metadata (CKV_GCP_34).", _os_login_overridden)
no_ip_forwarding = _vm_rule("no-ip-forwarding", "VMs do not forward IP packets (CKV_GCP_36).", _ip_forwarding)
no_public_ip = _vm_rule(
    "no-public-ip", "Only VMs that need one have an external IP: the fleet's rendezvous and swarm VMs (CKV_GCP_40).",
    _public_ip)
disk_customer_key = _vm_rule(
    "disk-customer-key", "VM disks are encrypted with a customer key, supplied or managed (CSEK/CMEK, CKV_GCP_38).",
    _customer_key)
no_default_network = _vm_rule(
    "no-default-network", "VMs are not on the project's default network (CKV_GCP_27).", _default_network)


def _all_ports(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = args.props
    if args.resource_type != FIREWALL:
        return
    if last_name(props.get("network")) == "default":
        report_violation(f"{args.name} is a rule of the project's default network (CKV_GCP_27).", None)
    if is_ingress(props) and opens_to_world(props) and \
            (allowed(props, "tcp", 0, pilot.MAX_PORT) or allowed(props, "udp", 0, pilot.MAX_PORT)):
        report_violation(f"{args.name} admits every port from the whole internet.", None)


no_all_ports_open = ResourceValidationPolicy(
    name="no-all-ports-open",
    description="No ingress firewall rule admits every port from 0.0.0.0/0 (CKV2_GCP_12), nor is one made for the "
                "default network (CKV_GCP_27).",
    validate=_all_ports, enforcement_level=ADVISORY)

SCANNER_POLICIES = [os_login_not_overridden, no_ip_forwarding, no_public_ip, disk_customer_key, no_default_network,
                    no_all_ports_open]
