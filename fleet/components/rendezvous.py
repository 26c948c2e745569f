"""The rendezvous: registry, beacon and dashboard on one VM with a static IP and a durable store disk."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from fleet.components.instance import FleetVm, internal_ip
from fleet.components.network import FLEET_TAG, RENDEZVOUS_TAG, FleetNetwork
from fleet.config.model import FleetConfig, RendezvousConfig
from fleet.facts import pilot
from fleet.facts.rendezvous_build import build_table
from fleet.vm_contract import metadata


def install_source_metadata(rv: RendezvousConfig) -> dict[str, str]:
    """Where the VM gets its rendezvous binary (by the VM contract's field names): the prebuilt release when set (it
    wins), else the pinned source.

    Config validation guarantees one of the two."""
    if rv.release:
        return {"release_url": rv.release.url, "release_sha256": rv.release.sha256}
    if not rv.source:
        return {}
    source = build_table().sources[rv.source]
    return {"source_commit": source.commit, "source_url": source.url, "source_digest": source.tree_sha256,
            "go_version": source.go}


@dataclass
class RendezvousVm:
    name: str
    zone: str
    address: gcp.compute.Address
    instance: gcp.compute.Instance

    @property
    def external_ip(self) -> pulumi.Output[str]:
        return self.address.address

    @property
    def internal_ip(self) -> pulumi.Output[str]:
        return internal_ip(self.instance)


class Rendezvous(pulumi.ComponentResource):
    """One rendezvous VM with a reserved static IP and the registry's store on its own disk. With `failoverZone` the
    store disk is a regional disk replicated across the two zones, and `activeZone` says where the VM runs: a
    failover is that one value changed and `pulumi up`, which deletes the VM in the old zone first (fencing it,
    and letting go of the address and the disk) and creates it in the other, attached to the same disk (forced,
    should the old VM's zone be unreachable) and the same address."""

    external_ip: pulumi.Output[str]
    internal_ip: pulumi.Output[str]

    def __init__(self, cfg: FleetConfig, network: FleetNetwork, service_account_email: pulumi.Input[str],
                 labels: dict[str, str], opts: pulumi.ResourceOptions | None = None) -> None:
        rv = cfg.rendezvous
        super().__init__("pilot-fleet:fleet:Rendezvous", rv.name, None, opts)
        self.cfg, self.network, self.labels, self.sa = cfg, network, labels, service_account_email
        self.primary = self._vm(rv.name, cfg.rendezvous_zone, rv.machine_type)
        self._firewalls()
        self.external_ip = self.primary.external_ip
        self.internal_ip = self.primary.internal_ip
        self.zone = self.primary.zone
        self.register_outputs({"externalIp": self.external_ip, "internalIp": self.internal_ip})

    def _store(self) -> pulumi.Output[str]:
        """The registry's -store disk: zonal, or regional across the rendezvous' zone and its failoverZone."""
        cfg, rv = self.cfg, self.cfg.rendezvous
        child = pulumi.ResourceOptions(parent=self)
        common = {"name": f"{rv.name}-store", "project": cfg.gcp.project, "size": rv.store_disk_gb,
                  "type": pilot.DISK_TYPE, "labels": self.labels}
        if rv.failover_zone:
            regional = gcp.compute.RegionDisk(f"{rv.name}-store", region=cfg.gcp.region,
                                              replica_zones=cfg.store_zones, opts=child, **common)
            return regional.self_link
        return gcp.compute.Disk(f"{rv.name}-store", zone=cfg.store_zones[0], opts=child, **common).self_link

    def _vm(self, name: str, zone: str, machine_type: str) -> RendezvousVm:
        cfg, rv, labels = self.cfg, self.cfg.rendezvous, self.labels
        child = pulumi.ResourceOptions(parent=self)
        project = cfg.gcp.project
        # Agents are configured with this address: it must survive stop/start and re-creation of the VM, and a
        # failover moves it to the VM in the other zone.
        address = gcp.compute.Address(f"{name}-ip", name=f"{name}-ip", project=project,
                                      region=cfg.gcp.region, address_type="EXTERNAL", network_tier="PREMIUM",
                                      labels=labels, opts=child)
        # The registry's -store lives on its own disk so it outlives the VM and its boot disk (and, regional, a zone).
        store = self._store()
        instance = FleetVm(
            name=name, machine_type=machine_type, zone=zone, project=project,
            subnetwork=self.network.subnetwork, service_account_email=self.sa,
            metadata=metadata(pilot.ROLE_RENDEZVOUS, {
                "version": cfg.pilot_version,
                "store_device": pilot.STORE_DEVICE,
                "new_registrations_per_minute": str(rv.new_registrations_per_minute),
                "registry_port": str(rv.ports.registry),
                "beacon_port": str(rv.ports.beacon),
                "dashboard_port": str(rv.ports.dashboard),
                **install_source_metadata(rv),
            }),
            labels={**labels, "role": pilot.ROLE_RENDEZVOUS}, tags=[FLEET_TAG, RENDEZVOUS_TAG],
            disk_gb=rv.disk_gb, nat_ip=address.address,
            attached_disks=[gcp.compute.InstanceAttachedDiskArgs(
                source=store, device_name=pilot.STORE_DEVICE, force_attach=bool(rv.failover_zone) or None)],
            # a new zone replaces the VM: the old one must be gone (fenced) before the new one takes the address
            # and the disk
            delete_before_replace=True,
        ).declare(self)
        return RendezvousVm(name, zone, address, instance)

    def _firewalls(self) -> None:
        rv, project = self.cfg.rendezvous, self.cfg.gcp.project
        rules = [
            ("registry", "tcp", rv.ports.registry, rv.agent_source_ranges, "Pilot registry from agents"),
            ("beacon", "udp", rv.ports.beacon, rv.agent_source_ranges, "Pilot beacon from agents"),
            ("dashboard", "tcp", rv.ports.dashboard, rv.operator_ranges, "Dashboard and JSON API from operators"),
        ]
        for what, protocol, port, ranges, why in rules:
            if not ranges:  # an empty source list would mean 0.0.0.0/0 to GCP: declare no rule instead
                continue
            gcp.compute.Firewall(
                f"{rv.name}-allow-{what}", name=f"{rv.name}-allow-{what}", project=project,
                network=self.network.network, description=f"{why} ({port}/{protocol}).", direction="INGRESS",
                allows=[gcp.compute.FirewallAllowArgs(protocol=protocol, ports=[str(port)])],
                source_ranges=list(ranges), target_tags=[RENDEZVOUS_TAG], opts=pulumi.ResourceOptions(parent=self),
            )

    def endpoint(self, port: int) -> pulumi.Output[str]:
        return self.external_ip.apply(lambda ip: f"{ip}:{port}")
