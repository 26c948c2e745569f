"""The rendezvous: registry, beacon and dashboard on one VM with a static IP and a durable store disk."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from fleet import pilot
from fleet.config import FleetConfig, RendezvousConfig
from fleet.instance import FleetVm, internal_ip
from fleet.network import FLEET_TAG, RENDEZVOUS_TAG, STANDBY_TAG, FleetNetwork
from fleet.rendezvous_build import build_table


def install_source_metadata(rv: RendezvousConfig) -> dict[str, str]:
    """Where the VM gets its rendezvous binary: the prebuilt release when set (it wins), else the pinned source.

    Config validation guarantees one of the two."""
    key = pilot.MetadataKey
    if rv.release:
        return {key.RENDEZVOUS_URL: rv.release.url, key.RENDEZVOUS_SHA256: rv.release.sha256}
    if not rv.source:
        return {}
    source = build_table().sources[rv.source]
    return {key.RENDEZVOUS_SOURCE_COMMIT: source.commit, key.RENDEZVOUS_SOURCE_URL: source.url,
            key.RENDEZVOUS_SOURCE_DIGEST: source.tree_sha256, key.GO_VERSION: source.go}


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
    """The primary, and optionally a hot standby in another zone (`-standby PRIMARY:9000`) with its own static IP
    and store disk, carrying the same network tag so the same firewall rules admit agents after a failover."""

    external_ip: pulumi.Output[str]
    internal_ip: pulumi.Output[str]

    def __init__(self, cfg: FleetConfig, network: FleetNetwork, service_account_email: pulumi.Input[str],
                 labels: dict[str, str], opts: pulumi.ResourceOptions | None = None) -> None:
        rv = cfg.rendezvous
        super().__init__("pilot-fleet:fleet:Rendezvous", rv.name, None, opts)
        self.cfg, self.network, self.labels, self.sa = cfg, network, labels, service_account_email
        self.primary = self._vm(rv.name, cfg.zone_of(rv.zone), rv.machine_type, {}, [RENDEZVOUS_TAG])
        self.standby: RendezvousVm | None = None
        if rv.standby:
            replicate_from = self.primary.internal_ip.apply(lambda ip: f"{ip}:{rv.ports.registry}")
            self.standby = self._vm(rv.standby_name, rv.standby.zone, rv.standby.machine_type or rv.machine_type,
                                    {pilot.MetadataKey.STANDBY_OF: replicate_from}, [RENDEZVOUS_TAG, STANDBY_TAG])
            # replication runs over the internal network, whatever agentSourceRanges admits
            gcp.compute.Firewall(
                f"{rv.name}-allow-standby", name=f"{rv.name}-allow-standby", project=cfg.gcp.project,
                network=network.network, direction="INGRESS",
                description=f"The standby rendezvous replicates from the primary's registry ({rv.ports.registry}/tcp).",
                allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=[str(rv.ports.registry)])],
                source_tags=[STANDBY_TAG], target_tags=[RENDEZVOUS_TAG], opts=pulumi.ResourceOptions(parent=self))
        self._firewalls()
        self.external_ip = self.primary.external_ip
        self.internal_ip = self.primary.internal_ip
        self.zone = self.primary.zone
        self.register_outputs({"externalIp": self.external_ip, "internalIp": self.internal_ip})

    def _vm(self, name: str, zone: str, machine_type: str, extra: dict[str, pulumi.Input[str]],
            tags: list[str]) -> RendezvousVm:
        cfg, rv, labels = self.cfg, self.cfg.rendezvous, self.labels
        child = pulumi.ResourceOptions(parent=self)
        project = cfg.gcp.project
        # Agents are configured with this address: it must survive stop/start and re-creation of the VM, and it
        # can be moved to the standby in a failover.
        address = gcp.compute.Address(f"{name}-ip", name=f"{name}-ip", project=project,
                                      region=cfg.gcp.region, address_type="EXTERNAL", network_tier="PREMIUM",
                                      labels=labels, opts=child)
        # The registry's -store lives on its own disk so it outlives the VM and its boot disk.
        store = gcp.compute.Disk(f"{name}-store", name=f"{name}-store", project=project, zone=zone,
                                 size=rv.store_disk_gb, type="pd-balanced", labels=labels, opts=child)
        instance = FleetVm(
            name=name, machine_type=machine_type, zone=zone, project=project,
            subnetwork=self.network.subnetwork, service_account_email=self.sa,
            metadata={
                pilot.MetadataKey.ROLE: pilot.ROLE_RENDEZVOUS,
                pilot.MetadataKey.VERSION: cfg.pilot_version,
                pilot.MetadataKey.STORE_DEVICE: pilot.STORE_DEVICE,
                pilot.MetadataKey.NEW_REGISTRATIONS_PER_MINUTE: str(rv.new_registrations_per_minute),
                pilot.MetadataKey.REGISTRY_PORT: str(rv.ports.registry),
                pilot.MetadataKey.BEACON_PORT: str(rv.ports.beacon),
                pilot.MetadataKey.DASHBOARD_PORT: str(rv.ports.dashboard),
                **install_source_metadata(rv),
                **extra,
            },
            labels={**labels, "role": pilot.ROLE_RENDEZVOUS}, tags=[FLEET_TAG, *tags],
            disk_gb=rv.disk_gb, nat_ip=address.address,
            attached_disks=[gcp.compute.InstanceAttachedDiskArgs(source=store.self_link,
                                                                 device_name=pilot.STORE_DEVICE)],
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
