"""The rendezvous: registry, beacon and dashboard on one VM with a static IP and a durable store disk."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from fleet import pilot
from fleet.config import FleetConfig
from fleet.instance import FleetVm, internal_ip
from fleet.network import FLEET_TAG, RENDEZVOUS_TAG, FleetNetwork

STORE_DEVICE = "pilot-store"


class Rendezvous(pulumi.ComponentResource):
    external_ip: pulumi.Output[str]
    internal_ip: pulumi.Output[str]

    def __init__(self, cfg: FleetConfig, network: FleetNetwork, service_account_email: pulumi.Input[str],
                 labels: dict[str, str], opts: pulumi.ResourceOptions | None = None) -> None:
        rv = cfg.rendezvous
        super().__init__("pilot-fleet:fleet:Rendezvous", rv.name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        project, zone = cfg.gcp.project, cfg.zone_of(rv.zone)
        # Agents are configured with this address: it must survive stop/start and re-creation of the VM.
        address = gcp.compute.Address(f"{rv.name}-ip", name=f"{rv.name}-ip", project=project,
                                      region=cfg.gcp.region, address_type="EXTERNAL", network_tier="PREMIUM",
                                      labels=labels, opts=child)
        # The registry's -store lives on its own disk so it outlives the VM and its boot disk.
        store = gcp.compute.Disk(f"{rv.name}-store", name=f"{rv.name}-store", project=project, zone=zone,
                                 size=rv.store_disk_gb, type="pd-balanced", labels=labels,
                                 opts=pulumi.ResourceOptions(parent=self, protect=False))
        instance = FleetVm(
            name=rv.name, machine_type=rv.machine_type, zone=zone, project=project,
            subnetwork=network.subnetwork, service_account_email=service_account_email,
            metadata={
                pilot.MetadataKey.ROLE: pilot.ROLE_RENDEZVOUS,
                pilot.MetadataKey.VERSION: cfg.pilot_version,
                pilot.MetadataKey.STORE_DEVICE: STORE_DEVICE,
                pilot.MetadataKey.NEW_REGISTRATIONS_PER_MINUTE: str(rv.new_registrations_per_minute),
                pilot.MetadataKey.REGISTRY_PORT: str(rv.ports.registry),
                pilot.MetadataKey.BEACON_PORT: str(rv.ports.beacon),
                pilot.MetadataKey.DASHBOARD_PORT: str(rv.ports.dashboard),
                **({pilot.MetadataKey.RENDEZVOUS_URL: rv.release.url,
                    pilot.MetadataKey.RENDEZVOUS_SHA256: rv.release.sha256} if rv.release else {}),
            },
            labels={**labels, "role": pilot.ROLE_RENDEZVOUS}, tags=[FLEET_TAG, RENDEZVOUS_TAG],
            disk_gb=rv.disk_gb, nat_ip=address.address,
            attached_disks=[gcp.compute.InstanceAttachedDiskArgs(source=store.self_link, device_name=STORE_DEVICE)],
        ).declare(self)

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
                network=network.network, description=f"{why} ({port}/{protocol}).", direction="INGRESS",
                allows=[gcp.compute.FirewallAllowArgs(protocol=protocol, ports=[str(port)])],
                source_ranges=list(ranges), target_tags=[RENDEZVOUS_TAG], opts=child,
            )

        self.external_ip = address.address
        self.internal_ip = internal_ip(instance)
        self.zone = zone
        self.register_outputs({"externalIp": self.external_ip, "internalIp": self.internal_ip})

    def endpoint(self, port: int) -> pulumi.Output[str]:
        return self.external_ip.apply(lambda ip: f"{ip}:{port}")
