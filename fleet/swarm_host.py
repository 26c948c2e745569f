"""A swarm host: one VM that runs its agent target of pilot-daemons, and the firewall for their tunnel ports."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from fleet import pilot
from fleet.config import FleetConfig, SwarmHostConfig
from fleet.instance import FleetVm, external_ip, internal_ip
from fleet.network import FLEET_TAG, FleetNetwork, swarm_tag
from fleet.rendezvous import Rendezvous


class SwarmHost(pulumi.ComponentResource):
    external_ip: pulumi.Output[str]
    internal_ip: pulumi.Output[str]

    def __init__(self, cfg: FleetConfig, host: SwarmHostConfig, network: FleetNetwork, rendezvous: Rendezvous,
                 service_account_email: pulumi.Input[str], labels: dict[str, str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pilot-fleet:fleet:SwarmHost", host.name, None, opts)
        project = cfg.gcp.project
        self.zone = cfg.zone_of(host.zone)
        ports = cfg.rendezvous.ports
        instance = FleetVm(
            name=host.name, machine_type=host.machine_type, zone=self.zone, project=project,
            subnetwork=network.subnetwork, service_account_email=service_account_email,
            metadata={
                pilot.MetadataKey.ROLE: pilot.ROLE_SWARM,
                pilot.MetadataKey.VERSION: cfg.pilot_version,
                pilot.MetadataKey.AGENT_TARGET: str(host.target_agents),
                pilot.MetadataKey.REGISTRY: rendezvous.endpoint(ports.registry),
                pilot.MetadataKey.BEACON: rendezvous.endpoint(ports.beacon),
                pilot.MetadataKey.BASE_UDP_PORT: str(host.base_udp_port),
                pilot.MetadataKey.SPAWN_PARALLELISM: str(host.spawn_parallelism),
                pilot.MetadataKey.ROUND_DELAY_SECONDS: f"{host.round_delay_seconds:g}",
                pilot.MetadataKey.NEW_REGISTRATIONS_PER_MINUTE: str(cfg.rendezvous.new_registrations_per_minute),
                pilot.MetadataKey.GOGC: str(host.gogc),
                pilot.MetadataKey.HEALTH_PORT: str(pilot.SUPERVISOR_HEALTH_PORT),
                pilot.MetadataKey.HEALTH_THRESHOLD: f"{cfg.alert_threshold:g}",
            },
            labels={**labels, "role": pilot.ROLE_SWARM}, tags=[FLEET_TAG, swarm_tag(host.name)],
            disk_gb=host.disk_gb,
        ).declare(self)
        gcp.compute.Firewall(
            f"{host.name}-allow-agents", name=f"{host.name}-allow-agents", project=project,
            network=network.network, direction="INGRESS",
            description=f"Pilot tunnel ports of {host.name}'s {host.target_agents} agents.",
            allows=[gcp.compute.FirewallAllowArgs(protocol="udp",
                                                  ports=[f"{host.base_udp_port}-{host.last_udp_port}"])],
            source_ranges=list(host.peer_source_ranges), target_tags=[swarm_tag(host.name)],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.external_ip = external_ip(instance)
        self.internal_ip = internal_ip(instance)
        self.register_outputs({"externalIp": self.external_ip, "internalIp": self.internal_ip})
