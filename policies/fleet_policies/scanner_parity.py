"""Advisories the usual Compute Engine scanners make, with their Checkov IDs (issue #22, scanner parity): OS Login
turned off on one VM, IP forwarding, a public IP where none is needed, disks without a customer key, a firewall
rule open on every port to the internet, the default network.

A public IP is needed by the fleet's own VMs: the rendezvous is reached at its external address by agents outside
the VPC, and swarm VMs download their pinned wheels through it (the fleet declares no Cloud NAT); other VMs are
judged."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from . import facts as pilot
from .advisory import ADVISORY, vm_rule
from .firewall_rules import allowed, ingress_in_force, opens_to_world
from .gce import FIREWALL, last_name, truthy
from .vms import EffectiveVm

NEEDS_PUBLIC_IP = (pilot.ROLE_RENDEZVOUS, pilot.ROLE_SWARM)
DISK_KEYS = ("diskEncryptionKey", "diskEncryptionKeyRaw", "diskEncryptionKeyRsa", "kmsKeySelfLink")


def _os_login_overridden(vm: EffectiveVm) -> str | None:
    key, md = pilot.MetadataKey.OS_LOGIN, vm.metadata
    return f"turns OS Login off for itself ({key}: {md.get(key)})" if key in md and not truthy(md.get(key)) else None


def _ip_forwarding(vm: EffectiveVm) -> str | None:
    return "forwards IP packets it did not originate (canIpForward)" if truthy(vm.props.get("canIpForward")) else None


def _public_ip(vm: EffectiveVm) -> str | None:
    if vm.role in NEEDS_PUBLIC_IP:
        return None
    if any(n.get("accessConfigs") or n.get("ipv6AccessConfigs") for n in vm.interfaces):
        return "has an external IP address; it is not a fleet VM that needs one"
    return None


def _customer_key(vm: EffectiveVm) -> str | None:
    plain = [name for name, disk in vm.disks if not any(disk.get(k) for k in DISK_KEYS)]
    if plain:
        return f"{', '.join(plain)} encrypted with Google-managed keys only (no CSEK or CMEK)"
    return None


def _default_network(vm: EffectiveVm) -> str | None:
    if vm.network is not None and vm.network.name == "default":
        return "runs on the project's default network (its firewall rules were made for anyone's VMs)"
    return None


os_login_not_overridden = vm_rule(
    "os-login-not-overridden", "No VM turns OS Login off in its own metadata (CKV_GCP_34).",
    (f"metadata.{pilot.MetadataKey.OS_LOGIN}",), _os_login_overridden)
no_ip_forwarding = vm_rule("no-ip-forwarding", "VMs do not forward IP packets (CKV_GCP_36).", ("canIpForward",),
                           _ip_forwarding)
no_public_ip = vm_rule(
    "no-public-ip", "Only VMs that need one have an external IP: the fleet's rendezvous and swarm VMs (CKV_GCP_40).",
    (f"metadata.{pilot.MetadataKey.ROLE}", "networkInterfaces"), _public_ip)
disk_customer_key = vm_rule(
    "disk-customer-key", "VM disks are encrypted with a customer key, supplied or managed (CSEK/CMEK, CKV_GCP_38).",
    ("bootDisk", "attachedDisks", "disks"), _customer_key)
no_default_network = vm_rule(
    "no-default-network", "VMs are not on the project's default network (CKV_GCP_27).", ("networkInterfaces",),
    _default_network)


def _all_ports(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = args.props
    if args.resource_type != FIREWALL:
        return
    if last_name(props.get("network")) == "default":
        report_violation(f"{args.name} is a rule of the project's default network (CKV_GCP_27).", None)
    if ingress_in_force(props) and opens_to_world(props) and \
            (allowed(props, "tcp", 0, pilot.MAX_PORT) or allowed(props, "udp", 0, pilot.MAX_PORT)):
        report_violation(f"{args.name} admits every port from the whole internet.", None)


no_all_ports_open = ResourceValidationPolicy(
    name="no-all-ports-open",
    description="No ingress firewall rule admits every port from 0.0.0.0/0 (CKV2_GCP_12), nor is one made for the "
                "default network (CKV_GCP_27).",
    validate=_all_ports, enforcement_level=ADVISORY)

SCANNER_POLICIES = [os_login_not_overridden, no_ip_forwarding, no_public_ip, disk_customer_key, no_default_network,
                    no_all_ports_open]
