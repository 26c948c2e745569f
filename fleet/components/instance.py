"""The one way the fleet declares a VM: hardened, labelled, role and target in `pilot-*` metadata, no script keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_gcp as gcp

from fleet.components.service_account import SCOPES
from fleet.facts import names, pilot
from fleet.vm_contract import SCRIPT_METADATA_KEYS, MetadataKey

# Compute Engine keys every fleet VM carries: OS Login instead of metadata SSH keys, no serial console,
# guest attributes on so the supervisor can publish target/running/restarts.
HARDENING_METADATA = {
    MetadataKey.OS_LOGIN: "TRUE",
    MetadataKey.BLOCK_PROJECT_SSH_KEYS: "TRUE",
    MetadataKey.SERIAL_PORT: "FALSE",
    MetadataKey.GUEST_ATTRIBUTES: "TRUE",
}


# What Compute Engine requires of a Spot VM's scheduling, and what the fleet chooses where it may: STOP keeps the
# boot disk of a stand-alone host (a group recreates its VMs either way, their state disks kept by its policy).
SPOT_SCHEDULING = {"provisioning_model": "SPOT", "preemptible": True, "automatic_restart": False,
                   "on_host_maintenance": "TERMINATE", "instance_termination_action": "STOP"}


@dataclass(kw_only=True)
class FleetVm:
    """The one way the fleet declares a VM (not a component of its own: the host, pool or rendezvous that owns it
    declares it as its child), as an instance or as a managed group's instance template."""

    name: str
    machine_type: str
    zone: str
    project: str
    subnetwork: pulumi.Input[str]
    service_account_email: pulumi.Input[str]
    metadata: Mapping[str, pulumi.Input[str]]
    labels: Mapping[str, str]
    tags: Sequence[str]
    disk_gb: int
    nat_ip: pulumi.Input[str] | None = None
    attached_disks: list[gcp.compute.InstanceAttachedDiskArgs] = field(default_factory=list)
    # a template's agent state disk (GB): created with each VM, kept by the group's stateful policy
    state_disk_gb: int | None = None
    # replaced by deleting first (the rendezvous: its address and store disk can be held by one VM at a time)
    delete_before_replace: bool = False
    # properties whose change replaces the VM instead of updating it in place (the rendezvous: its store disk, so a
    # new VM boots and mounts the new disk; an in-place attach under a running registry would not)
    replace_on_changes: tuple[str, ...] = ()
    # the netmask of an alias IP range from the subnet, "/N" (Compute Engine picks it): a swarm VM's registration
    # addresses past its own internal one
    alias_prefix: int | None = None
    # a reserved internal address (the rendezvous, agentReach vpc: agents register with it, across a failover)
    network_ip: pulumi.Input[str] | None = None
    # the network, named on the interface beside the subnetwork when this stack does not declare them
    # (network.existing). Compute Engine infers it from the subnetwork anyway; the policy pack cannot, and needs it
    # to tell which firewall rules reach the VM.
    network: pulumi.Input[str] | None = None
    # a Cloud KMS key (CMEK) for its disks (FleetConfig.disk_kms_key); None: Google-managed keys
    kms_key: str | None = None
    # its OAuth scopes: logging and monitoring; the rendezvous with registry TLS adds cloud-platform, the only scope
    # Secret Manager accepts (what it may read is its service account's IAM: one secret)
    scopes: Sequence[str] = SCOPES
    # Spot provisioning: preemptible at any time with 30 s notice, never restarted by Compute Engine itself, stopped
    # (not deleted) on preemption so its disks stay; a pool's group recreates it, a stand-alone host stays stopped
    spot: bool = False

    def _template_key(self) -> gcp.compute.InstanceTemplateDiskDiskEncryptionKeyArgs | None:
        return gcp.compute.InstanceTemplateDiskDiskEncryptionKeyArgs(kms_key_self_link=self.kms_key) \
            if self.kms_key else None

    def _aliases(self, shape: str) -> list[Any] | None:
        if self.alias_prefix is None:
            return None
        return [getattr(gcp.compute, f"{shape}NetworkInterfaceAliasIpRangeArgs")(ip_cidr_range=f"/{self.alias_prefix}")]

    def _checked_metadata(self) -> dict[str, pulumi.Input[str]]:
        forbidden = set(self.metadata) & set(SCRIPT_METADATA_KEYS)
        if forbidden:  # the project-level script is the only one; see policies/ no-instance-startup-scripts
            raise ValueError(f"{self.name}: instance metadata must not carry {sorted(forbidden)}")
        return {**HARDENING_METADATA, **self.metadata}

    def _hardened(self, shape: str) -> dict[str, Any]:
        """What an Instance and an InstanceTemplate share, in each API's own argument classes (SHAPE is "Instance"
        or "InstanceTemplate"): the checked metadata, labels, tags, the role's service account, shielded VM."""
        return {
            "project": self.project, "machine_type": self.machine_type, "metadata": self._checked_metadata(),
            "labels": dict(self.labels), "tags": list(self.tags),
            "service_account": getattr(gcp.compute, f"{shape}ServiceAccountArgs")(
                email=self.service_account_email, scopes=list(self.scopes)),
            "shielded_instance_config": getattr(gcp.compute, f"{shape}ShieldedInstanceConfigArgs")(
                enable_secure_boot=True, enable_vtpm=True, enable_integrity_monitoring=True),
            **({"scheduling": getattr(gcp.compute, f"{shape}SchedulingArgs")(**SPOT_SCHEDULING)} if self.spot else {}),
        }

    def declare_template(self, parent: pulumi.Resource) -> gcp.compute.InstanceTemplate:
        """The same VM as an instance template for a managed instance group. Templates are immutable: a change
        makes a new one (auto-named from `name`), the group rolls over to it, then the old one is deleted."""
        return gcp.compute.InstanceTemplate(
            self.name,
            name_prefix=names.template_prefix(self.name),
            disks=[gcp.compute.InstanceTemplateDiskArgs(source_image=pilot.BOOT_IMAGE, disk_size_gb=self.disk_gb,
                                                        disk_type="pd-balanced", boot=True, auto_delete=True,
                                                        disk_encryption_key=self._template_key()),
                   *([gcp.compute.InstanceTemplateDiskArgs(
                       device_name=pilot.STATE_DEVICE, disk_size_gb=self.state_disk_gb,
                       disk_type=pilot.STATE_DISK_TYPE, boot=False, auto_delete=False,
                       disk_encryption_key=self._template_key())]
                     if self.state_disk_gb else [])],
            # an external address per VM: the registry's new-identity limit is per source IP
            network_interfaces=[gcp.compute.InstanceTemplateNetworkInterfaceArgs(
                network=self.network, subnetwork=self.subnetwork, alias_ip_ranges=self._aliases("InstanceTemplate"),
                access_configs=[gcp.compute.InstanceTemplateNetworkInterfaceAccessConfigArgs()])],
            **self._hardened("InstanceTemplate"),
            opts=pulumi.ResourceOptions(parent=parent),
        )

    def declare(self, parent: pulumi.Resource) -> gcp.compute.Instance:
        return gcp.compute.Instance(
            self.name,
            name=self.name,
            zone=self.zone,
            boot_disk=gcp.compute.InstanceBootDiskArgs(
                initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(
                    image=pilot.BOOT_IMAGE, size=self.disk_gb, type="pd-balanced"),
                kms_key_self_link=self.kms_key,
            ),
            attached_disks=self.attached_disks or None,
            network_interfaces=[gcp.compute.InstanceNetworkInterfaceArgs(
                network=self.network, subnetwork=self.subnetwork, network_ip=self.network_ip,
                alias_ip_ranges=self._aliases("Instance"),
                access_configs=[gcp.compute.InstanceNetworkInterfaceAccessConfigArgs(nat_ip=self.nat_ip)],
            )],
            **self._hardened("Instance"),
            allow_stopping_for_update=True,
            opts=pulumi.ResourceOptions(parent=parent, delete_before_replace=self.delete_before_replace or None,
                                        replace_on_changes=list(self.replace_on_changes) or None),
        )


def internal_ip(instance: gcp.compute.Instance) -> pulumi.Output[str]:
    return instance.network_interfaces.apply(lambda nics: nics[0].network_ip or "")


def external_ip(instance: gcp.compute.Instance) -> pulumi.Output[str]:
    def first_nat_ip(nics: list[gcp.compute.outputs.InstanceNetworkInterface]) -> str:
        configs = nics[0].access_configs or []
        return (configs[0].nat_ip or "") if configs else ""

    return instance.network_interfaces.apply(first_nat_ip)
