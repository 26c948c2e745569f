"""A swarm host: one VM that runs its agent target of pilot-daemons, and the firewall for their tunnel ports."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from fleet.components.instance import FleetVm, external_ip, internal_ip
from fleet.components.network import FLEET_TAG, FleetNetwork, swarm_tag
from fleet.components.rendezvous import Rendezvous
from fleet.config.model import AgentSettings, FleetConfig, SwarmHostConfig
from fleet.facts import pilot
from fleet.facts.pilot_releases import releases


def agent_metadata(cfg: FleetConfig, spec: AgentSettings, target: int,
                   rendezvous: Rendezvous) -> dict[str, pulumi.Input[str]]:
    """The `pilot-*` attributes a swarm VM boots from and its supervisor follows live (startup/pilot_supervisor.py's
    `settings` reads exactly these)."""
    ports = cfg.rendezvous.ports
    return {
        pilot.MetadataKey.ROLE: pilot.ROLE_SWARM,
        pilot.MetadataKey.VERSION: cfg.pilot_version,
        pilot.MetadataKey.DAEMON_RELEASE: releases()[cfg.pilot_version].attribute(),
        pilot.MetadataKey.AGENT_TARGET: str(target),
        pilot.MetadataKey.REGISTRY: rendezvous.endpoint(ports.registry),
        pilot.MetadataKey.BEACON: rendezvous.endpoint(ports.beacon),
        pilot.MetadataKey.BASE_UDP_PORT: str(spec.base_udp_port),
        pilot.MetadataKey.SPAWN_PARALLELISM: str(spec.spawn_parallelism),
        pilot.MetadataKey.ROUND_DELAY_SECONDS: f"{spec.round_delay_seconds:g}",
        pilot.MetadataKey.NEW_REGISTRATIONS_PER_MINUTE: str(cfg.rendezvous.new_registrations_per_minute),
        pilot.MetadataKey.GOGC: str(spec.gogc),
        pilot.MetadataKey.HEALTH_PORT: str(pilot.SUPERVISOR_HEALTH_PORT),
        pilot.MetadataKey.HEALTH_THRESHOLD: f"{cfg.alert_threshold:g}",
        pilot.MetadataKey.ROLLOUT_MAX_UNAVAILABLE: f"{spec.rollout_max_unavailable:g}",
        # the agents' identities live on their own disk, which outlives the VM
        pilot.MetadataKey.STATE_DEVICE: pilot.STATE_DEVICE,
    }


def agent_ports_firewall(name: str, cfg: FleetConfig, spec: AgentSettings, per_vm: int, tag: str,
                         network: FleetNetwork, parent: pulumi.Resource) -> gcp.compute.Firewall:
    """Exactly the VM's agents' UDP tunnel ports, from the peers' ranges."""
    return gcp.compute.Firewall(
        f"{name}-allow-agents", name=f"{name}-allow-agents", project=cfg.gcp.project,
        network=network.network, direction="INGRESS",
        description=f"Pilot tunnel ports of {name}'s {per_vm} agents per VM.",
        allows=[gcp.compute.FirewallAllowArgs(protocol="udp",
                                              ports=[f"{spec.base_udp_port}-{spec.base_udp_port + per_vm - 1}"])],
        source_ranges=list(spec.peer_source_ranges), target_tags=[tag],
        opts=pulumi.ResourceOptions(parent=parent),
    )


class SwarmHost(pulumi.ComponentResource):
    external_ip: pulumi.Output[str]
    internal_ip: pulumi.Output[str]

    def __init__(self, cfg: FleetConfig, host: SwarmHostConfig, network: FleetNetwork, rendezvous: Rendezvous,
                 service_account_email: pulumi.Input[str], labels: dict[str, str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pilot-fleet:fleet:SwarmHost", host.name, None, opts)
        project = cfg.gcp.project
        self.zone = cfg.zone_of(host.zone)
        # The agents' state (identities, registration markers) on a disk of its own: a replaced VM (new zone,
        # new image) gets it back, and its agents come back as the identities the registry knows.
        state = gcp.compute.Disk(f"{host.name}-state", name=f"{host.name}-state", project=project, zone=self.zone,
                                 size=host.state_disk_gb, type=pilot.STATE_DISK_TYPE, labels=dict(labels),
                                 opts=pulumi.ResourceOptions(parent=self))
        instance = FleetVm(
            name=host.name, machine_type=host.machine_type, zone=self.zone, project=project,
            subnetwork=network.subnetwork, service_account_email=service_account_email,
            metadata=agent_metadata(cfg, host, host.target_agents, rendezvous),
            labels={**labels, "role": pilot.ROLE_SWARM}, tags=[FLEET_TAG, swarm_tag(host.name)],
            disk_gb=host.disk_gb,
            attached_disks=[gcp.compute.InstanceAttachedDiskArgs(source=state.self_link,
                                                                 device_name=pilot.STATE_DEVICE)],
        ).declare(self)
        agent_ports_firewall(host.name, cfg, host, host.target_agents, swarm_tag(host.name), network, self)
        self.external_ip = external_ip(instance)
        self.internal_ip = internal_ip(instance)
        self.register_outputs({"externalIp": self.external_ip, "internalIp": self.internal_ip})
