"""Advisory hardening rules (scanner equivalents in the descriptions)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from . import facts as pilot
from .advisory import ADVISORY, vm_rule
from .firewall_rules import allowed, ingress_in_force, opens_to_world
from .gce import FIREWALL, truthy
from .policy_config import ConfigSpec, config_for, config_schema
from .vms import EffectiveVm


def _shielded(vm: EffectiveVm) -> str | None:
    cfg = vm.props.get("shieldedInstanceConfig") or {}
    off = [k for k in ("enableSecureBoot", "enableVtpm", "enableIntegrityMonitoring") if not cfg.get(k)]
    return f"shielded VM settings off: {', '.join(off)}" if off else None


def _account(vm: EffectiveVm) -> Mapping[str, Any]:
    account = vm.props.get("serviceAccount")
    return account if isinstance(account, Mapping) else {}


def _service_account(vm: EffectiveVm) -> str | None:
    email = str(_account(vm).get("email") or "")
    if not email or email.endswith("-compute@developer.gserviceaccount.com"):
        return "runs as the default compute service account; give it a dedicated least-privilege account"
    return None


def _scopes(vm: EffectiveVm) -> str | None:
    """cloud-platform is the one scope Secret Manager accepts: a VM that reads the registry's key from it
    (pilot-registry-key-secret) may hold it with a dedicated account, whose IAM is then what bounds it."""
    if not any(str(s).rstrip("/").endswith("cloud-platform") for s in _account(vm).get("scopes") or []):
        return None
    if vm.metadata.get(pilot.MetadataKey.REGISTRY_KEY_SECRET) and _service_account(vm) is None:
        return None
    return "has the cloud-platform scope (full access to all Cloud APIs)" + (
        " with the default compute service account" if vm.metadata.get(pilot.MetadataKey.REGISTRY_KEY_SECRET)
        else "")


def _block_project_keys(vm: EffectiveVm) -> str | None:
    return None if truthy(vm.metadata.get(pilot.MetadataKey.BLOCK_PROJECT_SSH_KEYS)) else \
        "accepts project-wide SSH keys (set block-project-ssh-keys: TRUE)"


def _os_login(vm: EffectiveVm) -> str | None:
    return None if truthy(vm.metadata.get(pilot.MetadataKey.OS_LOGIN)) else \
        "OS Login is not enabled (enable-oslogin: TRUE)"


def _serial_port(vm: EffectiveVm) -> str | None:
    return "serial port access is enabled" if truthy(vm.metadata.get(pilot.MetadataKey.SERIAL_PORT)) else None


shielded_vm = vm_rule("shielded-vm", "VMs use Shielded VM: secure boot, vTPM, integrity monitoring (CKV_GCP_39).",
                      ("shieldedInstanceConfig",), _shielded)
no_default_service_account = vm_rule(
    "no-default-service-account", "VMs do not run as the default compute service account (CKV_GCP_30).",
    ("serviceAccount",), _service_account)
no_cloud_platform_scope = vm_rule(
    "no-cloud-platform-scope", "VMs are not given the cloud-platform scope (CKV_GCP_31), but for one that reads "
    "the registry's key from Secret Manager with a dedicated service account.", (
        "serviceAccount", f"metadata.{pilot.MetadataKey.REGISTRY_KEY_SECRET}"), _scopes)
block_project_ssh_keys = vm_rule(
    "block-project-ssh-keys", "VMs block project-wide SSH keys (CKV_GCP_32).",
    (f"metadata.{pilot.MetadataKey.BLOCK_PROJECT_SSH_KEYS}",), _block_project_keys)
os_login = vm_rule("os-login", "VMs use OS Login (CKV_GCP_33).", (f"metadata.{pilot.MetadataKey.OS_LOGIN}",),
                   _os_login)
serial_port_off = vm_rule("serial-port-off", "VMs keep the serial port off (CKV_GCP_35).",
                          (f"metadata.{pilot.MetadataKey.SERIAL_PORT}",), _serial_port)


def _firewall_rule(name: str, description: str, ports: Callable[[Mapping[str, Any]], list[int]],
                   config: ConfigSpec | None = None) -> ResourceValidationPolicy:
    """A rule on firewalls: none of `ports(config)` (TCP) may be open to the whole internet."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type != FIREWALL or not ingress_in_force(args.props) or not opens_to_world(args.props):
            return
        for port in ports(config_for(args.get_config(), config or {})):
            if allowed(args.props, "tcp", port, port):
                report_violation(f"{args.name} opens {port}/tcp to the whole internet.", None)

    return ResourceValidationPolicy(name=name, description=description, validate=validate,
                                    enforcement_level=ADVISORY,
                                    config_schema=config_schema(config) if config else None)


dashboard_not_public = _firewall_rule(
    "dashboard-not-public", "The rendezvous dashboard and JSON API (3000/tcp) are not open to 0.0.0.0/0.",
    lambda config: [int(config["dashboardPort"])],
    {"dashboardPort": ("integer", pilot.DASHBOARD_PORT)})
no_public_ssh_rdp = _firewall_rule(
    "no-public-ssh-rdp", "SSH (22) and RDP (3389) are not open to 0.0.0.0/0 (CKV_GCP_2, CKV_GCP_3).",
    lambda _config: [22, 3389])

ADVISORY_POLICIES = [dashboard_not_public, no_public_ssh_rdp, shielded_vm, no_default_service_account,
                     no_cloud_platform_scope, block_project_ssh_keys, os_login, serial_port_off]
