"""What every swarm VM shares, a host's or a pool's: the attributes it boots from and its supervisor follows live,
and the firewall rule for exactly its agents' UDP tunnel ports."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from fleet.components.network import FleetNetwork
from fleet.components.rendezvous import Rendezvous
from fleet.config.model import AgentSettings, FleetConfig
from fleet.facts import pilot
from fleet.facts.pilot_releases import releases
from fleet.vm_contract import metadata


def swarm_metadata(cfg: FleetConfig, spec: AgentSettings, target_agents: int,
                   rendezvous: Rendezvous) -> dict[str, pulumi.Input[str]]:
    """The swarm attributes by the VM contract's field names (fleet/vm_contract.py SWARM_ATTRIBUTES)."""
    ports = cfg.rendezvous.ports
    return metadata(pilot.ROLE_SWARM, {
        "version": cfg.pilot_version,
        "daemon_release": releases()[cfg.pilot_version].attribute(),
        "target_agents": str(target_agents),
        "registry": rendezvous.endpoint(ports.registry),
        "beacon": rendezvous.endpoint(ports.beacon),
        "base_udp_port": str(spec.base_udp_port),
        "spawn_parallelism": str(spec.spawn_parallelism),
        "round_delay_seconds": f"{spec.round_delay_seconds:g}",
        "new_registrations_per_minute": str(cfg.rendezvous.new_registrations_per_minute),
        "gogc": str(spec.gogc),
        "health_port": str(pilot.SUPERVISOR_HEALTH_PORT),
        "health_threshold": f"{cfg.alert_threshold:g}",
        "rollout_max_unavailable": f"{spec.rollout_max_unavailable:g}",
        # the agents' identities live on their own disk, which outlives the VM
        "state_device": pilot.STATE_DEVICE,
    })


def agent_ports_firewall(name: str, cfg: FleetConfig, spec: AgentSettings, target_agents: int, tag: str,
                         network: FleetNetwork, parent: pulumi.Resource) -> gcp.compute.Firewall:
    """Exactly the VM's agents' UDP tunnel ports, from the peers' ranges."""
    return gcp.compute.Firewall(
        f"{name}-allow-agents", name=f"{name}-allow-agents", project=cfg.gcp.project,
        network=network.network, direction="INGRESS",
        description=f"Pilot tunnel ports of {name}'s {target_agents} agents per VM.",
        allows=[gcp.compute.FirewallAllowArgs(
            protocol="udp", ports=[f"{spec.base_udp_port}-{spec.base_udp_port + target_agents - 1}"])],
        source_ranges=list(spec.peer_source_ranges), target_tags=[tag],
        opts=pulumi.ResourceOptions(parent=parent),
    )
