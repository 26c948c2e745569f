"""A swarm host: one VM that runs its agent target of pilot-daemons, and the firewall for their tunnel ports."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from fleet.components.instance import FleetVm, external_ip, internal_ip
from fleet.components.network import FLEET_TAG, FleetNetwork, swarm_tag
from fleet.components.rendezvous import Rendezvous
from fleet.components.swarm_vm import agent_ports_firewall, swarm_metadata
from fleet.config.model import FleetConfig, SwarmHostConfig
from fleet.facts import pilot


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
            metadata=swarm_metadata(cfg, host, host.target_agents, rendezvous),
            labels={**labels, "role": pilot.ROLE_SWARM}, tags=[FLEET_TAG, swarm_tag(host.name)],
            disk_gb=host.disk_gb,
            attached_disks=[gcp.compute.InstanceAttachedDiskArgs(source=state.self_link,
                                                                 device_name=pilot.STATE_DEVICE)],
        ).declare(self)
        agent_ports_firewall(host.name, cfg, host, host.target_agents, swarm_tag(host.name), network, self)
        self.external_ip = external_ip(instance)
        self.internal_ip = internal_ip(instance)
        self.register_outputs({"externalIp": self.external_ip, "internalIp": self.internal_ip})
