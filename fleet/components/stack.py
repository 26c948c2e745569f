"""Wires the fleet together from a validated FleetConfig, and exports the monitoring outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from fleet.components.network import FleetNetwork
from fleet.components.rendezvous import Rendezvous
from fleet.components.service_account import FleetServiceAccount
from fleet.components.startup_script import ProjectStartupScript
from fleet.components.swarm_host import SwarmHost
from fleet.components.swarm_pool import SwarmPool
from fleet.config.model import FleetConfig
from fleet.facts import pilot


@dataclass
class Fleet:
    cfg: FleetConfig
    rendezvous: Rendezvous
    swarm_hosts: list[SwarmHost]
    swarm_pools: list[SwarmPool]


def fleet_labels(cfg: FleetConfig) -> dict[str, str]:
    return {"app": pilot.PROJECT_NAME, "stack": pulumi.get_stack(), "managed-by": "pulumi", **cfg.labels}


def build_fleet(cfg: FleetConfig) -> Fleet:
    labels = fleet_labels(cfg)
    project = cfg.gcp.project
    ProjectStartupScript(project)
    network = FleetNetwork(cfg)
    rendezvous_sa = FleetServiceAccount("pilot-rendezvous-vm", project)
    swarm_sa = FleetServiceAccount("pilot-swarm-vm", project)
    rendezvous = Rendezvous(cfg, network, rendezvous_sa.email, labels)
    hosts = [SwarmHost(cfg, host, network, rendezvous, swarm_sa.email, labels) for host in cfg.swarm_hosts]
    pools = [SwarmPool(cfg, pool, network, rendezvous, swarm_sa.email, labels) for pool in cfg.swarm_pools]
    return Fleet(cfg, rendezvous, hosts, pools)


def fleet_outputs(fleet: Fleet) -> dict[str, Any]:
    """The stack outputs monitoring consumes; the schema is documented in README.md and versioned."""
    cfg, rv = fleet.cfg, fleet.rendezvous
    ports = cfg.rendezvous.ports
    expected = cfg.expected_agents
    hosts: list[Any] = [{
        "name": cfg.rendezvous.name, "role": pilot.ROLE_RENDEZVOUS, "zone": rv.zone,
        "machineType": cfg.rendezvous.machine_type, "internalIp": rv.internal_ip, "externalIp": rv.external_ip,
        "targetAgents": 0,
    }]
    for spec, host in zip(cfg.swarm_hosts, fleet.swarm_hosts, strict=True):
        hosts.append({
            "name": spec.name, "role": pilot.ROLE_SWARM, "zone": host.zone, "machineType": spec.machine_type,
            "internalIp": host.internal_ip, "externalIp": host.external_ip, "targetAgents": spec.target_agents,
            "udpPorts": f"{spec.base_udp_port}-{spec.last_udp_port}",
        })
    return {
        "schemaVersion": pilot.OUTPUTS_SCHEMA_VERSION,
        "project": cfg.gcp.project,
        "rendezvousIp": rv.external_ip,
        # the zones the registry's store disk lives in: the VM runs in one of them (its `zone` in `hosts`)
        "rendezvousStoreZones": cfg.store_zones,
        "registryEndpoint": rv.endpoint(ports.registry),
        "beaconEndpoint": rv.endpoint(ports.beacon),
        "dashboardUrl": rv.external_ip.apply(lambda ip: f"http://{ip}:{ports.dashboard}/"),
        "statsUrl": rv.external_ip.apply(lambda ip: f"http://{ip}:{ports.dashboard}{pilot.STATS_PATH}"),
        "expectedAgents": expected,
        "expectedAgentsByHost": {h.name: h.total_agents for h in cfg.swarm_hosts},
        "expectedAgentsByPool": {p.name: p.total_agents for p in cfg.swarm_pools},
        "alertThreshold": cfg.alert_threshold,
        "alertMinOnline": pilot.min_online(expected, cfg.alert_threshold),
        # where monitoring scrapes: the supervisors' /metrics and the rendezvous' dashboard (schema 2)
        "ports": {"registry": ports.registry, "beacon": ports.beacon, "dashboard": ports.dashboard,
                  "health": pilot.SUPERVISOR_HEALTH_PORT},
        "hosts": hosts,
        "pools": [{
            "name": spec.name, "machineType": spec.machine_type, "zones": pool.zones, "size": spec.size,
            "targetAgents": spec.target_agents, "totalAgents": spec.total_agents,
            "udpPorts": f"{spec.base_udp_port}-{spec.last_udp_port}", "instanceGroup": pool.instance_group,
        } for spec, pool in zip(cfg.swarm_pools, fleet.swarm_pools, strict=True)],
    }


def export_outputs(fleet: Fleet) -> None:
    for name, value in fleet_outputs(fleet).items():
        pulumi.export(name, value)
