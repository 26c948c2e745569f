"""The rendezvous: registry, beacon and dashboard on one VM with a static IP and a durable store disk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from fleet.components.instance import FleetVm, internal_ip
from fleet.components.service_account import SCOPES, SECRET_READER_SCOPES
from fleet.facts import names, pilot
from fleet.monitoring.ops_agent import ops_agent_metadata
from fleet.vm_contract import metadata


@dataclass(frozen=True, kw_only=True)
class RendezvousArgs:
    project: str
    region: str
    zone: str  # where the VM runs now: the rendezvous' zone, or its activeZone
    store_zones: Sequence[str]  # one: a zonal store disk; two: regional, replicated across them
    machine_type: str
    disk_gb: int
    store_disk_gb: int
    store_from_snapshot: str | None  # a snapshot the store disk is recreated from (its name changes with it)
    snapshot_every_hours: int
    snapshot_retention_days: int
    new_registrations_per_minute: int
    registry_port: int
    beacon_port: int
    dashboard_port: int
    agent_source_ranges: Sequence[str]
    operator_ranges: Sequence[str]
    # where the VM gets its binary, by the VM contract's field names: a pinned source, or a prebuilt release
    install_source: Mapping[str, str]
    start_fresh: bool
    pilot_version: str
    network: pulumi.Input[str]
    subnetwork: pulumi.Input[str]
    service_account_email: pulumi.Input[str]
    labels: Mapping[str, str]
    # vpc: agents register with a reserved internal address (FleetConfig.agent_reach)
    agent_reach: str = "internet"
    # the network named on the VM's interface (network.existing: the stack does not declare it; FleetVm.network)
    interface_network: pulumi.Input[str] | None = None
    # a Cloud KMS key (CMEK) for its boot and store disks (FleetConfig.disk_kms_key)
    disk_kms_key: str | None = None
    # registry TLS (RegistryTls): the certificate it serves (DER in base64) and the secret version of its key
    tls_certificate: pulumi.Input[str] | None = None
    tls_key_version: pulumi.Input[str] | None = None
    # the Ops Agent release its boot path installs, with the receiver of its /metrics (fleet/monitoring/ops_agent.py)
    ops_agent_version: str | None = None


class Rendezvous(pulumi.ComponentResource):
    """One rendezvous VM with a reserved static IP and the registry's store on its own disk. With `failoverZone` the
    store disk is a regional disk replicated across the two zones, and `activeZone` says where the VM runs: a
    failover is that one value changed and `pulumi up`, which deletes the VM in the old zone first (fencing it,
    and letting go of the address and the disk) and creates it in the other, attached to the same disk (forced,
    should the old VM's zone be unreachable) and the same address."""

    external_ip: pulumi.Output[str]
    internal_ip: pulumi.Output[str]

    def __init__(self, name: str, args: RendezvousArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pilot-fleet:fleet:Rendezvous", name, None, opts)
        self.args = args
        self.zone = args.zone
        self._vm(name)
        self._firewalls(name)
        self.register_outputs({"externalIp": self.external_ip, "internalIp": self.internal_ip})

    def _store(self, name: str) -> pulumi.Output[str]:
        """The registry's -store disk: zonal, or regional across the rendezvous' zone and its failoverZone, with its
        snapshot schedule (what losing the disk costs); recreated from `storeFromSnapshot` when that is set."""
        args = self.args
        child = pulumi.ResourceOptions(parent=self)
        # recreated from a snapshot, the disk takes a name of its own: the new one is created before the old one goes
        disk_name = names.store_disk(name, args.store_from_snapshot)
        common = {"name": disk_name, "project": args.project, "size": args.store_disk_gb,
                  "type": pilot.DISK_TYPE, "labels": dict(args.labels),
                  **({"snapshot": args.store_from_snapshot} if args.store_from_snapshot else {})}
        key = args.disk_kms_key
        schedule = self._snapshot_schedule(name)
        policy = {"resource_name": names.store_snapshots(name), "name": schedule.name, "project": args.project,
                  "opts": child}
        if len(args.store_zones) > 1:
            regional = gcp.compute.RegionDisk(
                names.store_disk(name), region=args.region, replica_zones=list(args.store_zones), opts=child,
                disk_encryption_key=gcp.compute.RegionDiskDiskEncryptionKeyArgs(kms_key_name=key) if key else None,
                **common)
            gcp.compute.RegionDiskResourcePolicyAttachment(disk=regional.name, region=args.region, **policy)
            return regional.self_link
        disk = gcp.compute.Disk(
            names.store_disk(name), zone=args.store_zones[0], opts=child,
            disk_encryption_key=gcp.compute.DiskDiskEncryptionKeyArgs(kms_key_self_link=key) if key else None,
            **common)
        gcp.compute.DiskResourcePolicyAttachment(disk=disk.name, zone=args.store_zones[0], **policy)
        return disk.self_link

    def _snapshot_schedule(self, name: str) -> gcp.compute.ResourcePolicy:
        args, every = self.args, self.args.snapshot_every_hours
        hours = gcp.compute.ResourcePolicySnapshotSchedulePolicyScheduleHourlyScheduleArgs(
            hours_in_cycle=every, start_time="00:00") if every < 24 else None
        daily = gcp.compute.ResourcePolicySnapshotSchedulePolicyScheduleDailyScheduleArgs(
            days_in_cycle=1, start_time="00:00") if every == 24 else None
        return gcp.compute.ResourcePolicy(
            names.store_snapshots(name), name=names.store_snapshots(name), project=args.project, region=args.region,
            description="the rendezvous' registry store disk: snapshots for the loss of the disk",
            snapshot_schedule_policy=gcp.compute.ResourcePolicySnapshotSchedulePolicyArgs(
                schedule=gcp.compute.ResourcePolicySnapshotSchedulePolicyScheduleArgs(hourly_schedule=hours,
                                                                                      daily_schedule=daily),
                retention_policy=gcp.compute.ResourcePolicySnapshotSchedulePolicyRetentionPolicyArgs(
                    max_retention_days=args.snapshot_retention_days, on_source_disk_delete="KEEP_AUTO_SNAPSHOTS"),
                snapshot_properties=gcp.compute.ResourcePolicySnapshotSchedulePolicySnapshotPropertiesArgs(
                    storage_locations=args.region, labels=dict(args.labels))),
            opts=pulumi.ResourceOptions(parent=self))

    def _vm(self, name: str) -> None:
        """The VM, its reserved addresses and its store disk; sets external_ip and internal_ip."""
        args = self.args
        child = pulumi.ResourceOptions(parent=self)
        # Agents are configured with this address: it must survive stop/start and re-creation of the VM, and a
        # failover moves it to the VM in the other zone.
        address = gcp.compute.Address(names.address(name), name=names.address(name), project=args.project,
                                      region=args.region, address_type="EXTERNAL", network_tier="PREMIUM",
                                      labels=dict(args.labels), opts=child)
        # Agents in the VPC register with this one (agentReach vpc): reserved in the subnet, it too survives
        # re-creation and moves with a failover (internal addresses are regional).
        self.internal_address = gcp.compute.Address(
            names.internal_address(name), name=names.internal_address(name), project=args.project,
            region=args.region, address_type="INTERNAL", subnetwork=args.subnetwork, labels=dict(args.labels),
            opts=child) if args.agent_reach == "vpc" else None
        # The registry's -store lives on its own disk so it outlives the VM and its boot disk (and, regional, a zone).
        store = self._store(name)
        instance = FleetVm(
            name=name, machine_type=args.machine_type, zone=args.zone, project=args.project,
            subnetwork=args.subnetwork, network=args.interface_network, kms_key=args.disk_kms_key,
            service_account_email=args.service_account_email,
            metadata=metadata(pilot.ROLE_RENDEZVOUS, {
                "version": args.pilot_version,
                "store_device": pilot.STORE_DEVICE,
                "new_registrations_per_minute": str(args.new_registrations_per_minute),
                "registry_port": str(args.registry_port),
                "beacon_port": str(args.beacon_port),
                "dashboard_port": str(args.dashboard_port),
                **args.install_source,
                **({"start_fresh": "true"} if args.start_fresh else {}),
                **({"registry_tls_cert": args.tls_certificate, "registry_key_secret": args.tls_key_version}
                   if args.tls_certificate is not None and args.tls_key_version is not None else {}),
                **ops_agent_metadata(pilot.ROLE_RENDEZVOUS, args.dashboard_port, args.ops_agent_version),
            }),
            scopes=SECRET_READER_SCOPES if args.tls_key_version is not None else SCOPES,
            labels={**args.labels, "role": pilot.ROLE_RENDEZVOUS}, tags=[names.FLEET_TAG, names.RENDEZVOUS_TAG],
            disk_gb=args.disk_gb, nat_ip=address.address,
            network_ip=self.internal_address.address if self.internal_address else None,
            attached_disks=[gcp.compute.InstanceAttachedDiskArgs(
                source=store, device_name=pilot.STORE_DEVICE, force_attach=len(args.store_zones) > 1 or None)],
            # a new zone replaces the VM: the old one must be gone (fenced) before the new one takes the address
            # and the disk; so does a store disk recreated from a snapshot (storeFromSnapshot)
            delete_before_replace=True, replace_on_changes=("attachedDisks",),
        ).declare(self)
        self.external_ip = address.address
        self.internal_ip = internal_ip(instance)

    def _firewalls(self, name: str) -> None:
        args = self.args
        rules = [
            ("registry", "tcp", args.registry_port, args.agent_source_ranges, "Pilot registry from agents"),
            ("beacon", "udp", args.beacon_port, args.agent_source_ranges, "Pilot beacon from agents"),
            ("dashboard", "tcp", args.dashboard_port, args.operator_ranges, "Dashboard and JSON API from operators"),
        ]
        for what, protocol, port, ranges, why in rules:
            if not ranges:  # an empty source list would mean 0.0.0.0/0 to GCP: declare no rule instead
                continue
            gcp.compute.Firewall(
                names.rendezvous_rule(name, what), name=names.rendezvous_rule(name, what), project=args.project,
                network=args.network, description=f"{why} ({port}/{protocol}).", direction="INGRESS",
                allows=[gcp.compute.FirewallAllowArgs(protocol=protocol, ports=[str(port)])],
                source_ranges=list(ranges), target_tags=[names.RENDEZVOUS_TAG],
                opts=pulumi.ResourceOptions(parent=self),
            )

    def endpoint(self, port: int) -> pulumi.Output[str]:
        """HOST:PORT agents use: the internal address for agents in the VPC (they register from their internal and
        alias addresses, which only the VPC routes), else the external one."""
        ip = self.internal_ip if self.args.agent_reach == "vpc" else self.external_ip
        return ip.apply(lambda host: f"{host}:{port}")
