"""The fleet: the root component of everything the program declares, built from a validated FleetConfig, and the
stack outputs it registers (fleet/outputs.py, the one schema monitoring and `fleet verify` read). It is the one
place the config models meet the components: each component takes keyword-only typed arguments of its own."""

from __future__ import annotations

import re

import pulumi

from fleet.components.cloud_monitoring import CloudMonitoring, CloudMonitoringArgs
from fleet.components.network import FleetNetwork, NetworkArgs
from fleet.components.registry_tls import RegistryTls, RegistryTlsArgs
from fleet.components.rendezvous import Rendezvous, RendezvousArgs
from fleet.components.service_account import FleetServiceAccount, ServiceAccountArgs
from fleet.components.startup_script import ProjectStartupScript, ProjectStartupScriptArgs
from fleet.components.swarm_host import SwarmHost, SwarmHostArgs
from fleet.components.swarm_pool import SwarmPool, SwarmPoolArgs
from fleet.components.swarm_vm import AgentVm, Registration, SwarmVmArgs
from fleet.config.model import FleetConfig, RendezvousConfig, SwarmVmConfig
from fleet.facts import pilot
from fleet.facts.rendezvous_build import build_table
from fleet.monitoring.alerts import watched_of
from fleet.outputs import SCHEMA_VERSION, HostOutput, PoolOutput, PortsOutput, StackOutputs


def fleet_labels(cfg: FleetConfig) -> dict[str, str]:
    # a stack name may hold what a label value may not (upper case, dots): lowercase, the rest as "-", 63 at most
    stack = re.sub(r"[^a-z0-9_-]", "-", pulumi.get_stack().lower())[:63]
    return {"app": pilot.PROJECT_NAME, "stack": stack, "managed-by": "pulumi", **cfg.labels}


def agent_vm(cfg: FleetConfig, vm: SwarmVmConfig) -> AgentVm:
    """A swarm host's or pool's VM as the components take it: the config's values, resolved."""
    return AgentVm(
        name=vm.name, machine_type=vm.machine_type, target_agents=vm.target_agents,
        max_target_agents=cfg.budget(vm).max_agents(), pilot_version=vm.pilot_version,
        base_udp_port=vm.base_udp_port, spawn_parallelism=vm.spawn_parallelism,
        round_delay_seconds=vm.round_delay_seconds, gogc=vm.gogc, rollout_max_unavailable=vm.rollout_max_unavailable,
        peer_source_ranges=list(vm.peer_source_ranges), disk_gb=vm.disk_gb, state_disk_gb=vm.state_disk_gb,
        registration=Registration(addresses=cfg.registration_addresses(vm), alias_prefix=cfg.alias_prefix(vm)),
        spot=vm.provisioning == "spot")


def install_source_metadata(rv: RendezvousConfig) -> dict[str, str]:
    """Where the rendezvous VM gets its binary (by the VM contract's field names): the prebuilt release when set,
    else the pinned source (config validation allows one of the two)."""
    if rv.release:
        return {"release_url": rv.release.url, "release_sha256": rv.release.sha256}
    if not rv.source:
        return {}
    source = build_table().sources[rv.source]
    return {"source_commit": source.commit, "source_url": source.url, "source_digest": source.tree_sha256,
            "go_version": source.go}


class Fleet(pulumi.ComponentResource):
    """Every resource of the fleet is its child, or a child of one of its components."""

    outputs: StackOutputs

    def __init__(self, name: str, cfg: FleetConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pilot-fleet:fleet:Fleet", name, None, opts)
        # Before this root existed its components were the stack's own children. The alias keeps their URNs (and,
        # as Pulumi carries a parent's aliases to its children, every resource's), so `pulumi up` of an existing
        # stack with this version replaces nothing; tests/test_plan_prod.py checks every URN against the last ones.
        child = pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)])
        project, labels = cfg.gcp.project, fleet_labels(cfg)
        ProjectStartupScript("startup-script", ProjectStartupScriptArgs(project=project), child)
        net = cfg.network
        network = FleetNetwork(net.name, NetworkArgs(
            project=project, region=cfg.gcp.region, subnet_cidr=net.subnet_cidr,
            ssh_source_ranges=cfg.ssh_source_ranges, existing=net.existing, subnet_name=net.subnet_name), child)
        rendezvous_sa = FleetServiceAccount("pilot-rendezvous-vm", ServiceAccountArgs(project=project), child)
        swarm_sa = FleetServiceAccount("pilot-swarm-vm", ServiceAccountArgs(project=project), child)
        rv = cfg.rendezvous
        registry_tls = RegistryTls("registry-tls", RegistryTlsArgs(
            project=project, rendezvous=rv.name, rotation=cfg.registry.tls_rotation, reader=rendezvous_sa.email,
            labels=labels), child) if cfg.registry.tls else None
        self.rendezvous = Rendezvous(rv.name, RendezvousArgs(
            project=project, region=cfg.gcp.region, zone=cfg.rendezvous_zone, store_zones=cfg.store_zones,
            machine_type=rv.machine_type, disk_gb=rv.disk_gb, store_disk_gb=rv.store_disk_gb,
            store_from_snapshot=rv.store_from_snapshot, snapshot_every_hours=rv.store_snapshots.every_hours,
            snapshot_retention_days=rv.store_snapshots.retention_days,
            new_registrations_per_minute=rv.new_registrations_per_minute, registry_port=rv.ports.registry,
            beacon_port=rv.ports.beacon, dashboard_port=rv.ports.dashboard,
            agent_source_ranges=list(rv.agent_source_ranges), operator_ranges=list(rv.operator_ranges),
            install_source=install_source_metadata(rv), start_fresh=rv.start_fresh, pilot_version=cfg.pilot_version,
            network=network.network, subnetwork=network.subnetwork,
            service_account_email=rendezvous_sa.email, labels=labels, agent_reach=cfg.agent_reach,
            interface_network=network.interface_network, disk_kms_key=cfg.disk_kms_key,
            tls_certificate=registry_tls.certificate if registry_tls else None,
            tls_key_version=registry_tls.key_version if registry_tls else None,
            ops_agent_version=cfg.monitoring.ops_agent_version), child)
        swarm = SwarmVmArgs(
            project=project, pilot_version=cfg.pilot_version, registry=self.rendezvous.endpoint(rv.ports.registry),
            beacon=self.rendezvous.endpoint(rv.ports.beacon),
            new_registrations_per_minute=rv.new_registrations_per_minute, health_threshold=cfg.alert_threshold,
            network=network.network, subnetwork=network.subnetwork, service_account_email=swarm_sa.email,
            labels=labels, interface_network=network.interface_network, disk_kms_key=cfg.disk_kms_key,
            registry_fingerprint=registry_tls.fingerprint if registry_tls else None,
            ops_agent_version=cfg.monitoring.ops_agent_version)
        self.hosts = [SwarmHost(h.name, SwarmHostArgs(fleet=swarm, vm=agent_vm(cfg, h), zone=cfg.zone_of(h.zone)),
                                child) for h in cfg.swarm_hosts]
        self.pools = [SwarmPool(p.name, SwarmPoolArgs(
            fleet=swarm, vm=agent_vm(cfg, p), size=p.size, max_unavailable=p.unavailable(len(cfg.zones_of(p))),
            zones=cfg.zones_of(p), region=cfg.gcp.region), child) for p in cfg.swarm_pools]
        if cfg.monitoring.cloud:
            CloudMonitoring("monitoring", CloudMonitoringArgs(
                project=project, watched=watched_of(project, cfg.expected_agents, cfg.alert_threshold, None),
                notification_channels=list(cfg.monitoring.notification_channels), labels=labels), child)
        self.outputs = self._outputs(cfg)
        self.register_outputs(self.outputs.exports())

    def _outputs(self, cfg: FleetConfig) -> StackOutputs:
        """What monitoring consumes; built without validation (some values are still Pulumi outputs here), from a
        config that was validated before anything was declared."""
        rv, ports = self.rendezvous, cfg.rendezvous.ports
        expected = cfg.expected_agents
        hosts = [HostOutput.model_construct(
            name=cfg.rendezvous.name, role=pilot.ROLE_RENDEZVOUS, zone=rv.zone,
            machine_type=cfg.rendezvous.machine_type, internal_ip=rv.internal_ip, external_ip=rv.external_ip,
            target_agents=0)]
        hosts += [HostOutput.model_construct(
            name=spec.name, role=pilot.ROLE_SWARM, zone=host.zone, machine_type=spec.machine_type,
            internal_ip=host.internal_ip, external_ip=host.external_ip, target_agents=spec.target_agents,
            udp_ports=f"{spec.base_udp_port}-{spec.last_udp_port}")
            for spec, host in zip(cfg.swarm_hosts, self.hosts, strict=True)]
        pools = [PoolOutput.model_construct(
            name=spec.name, machine_type=spec.machine_type, zones=pool.zones, size=spec.size,
            target_agents=spec.target_agents, total_agents=spec.total_agents,
            udp_ports=f"{spec.base_udp_port}-{spec.last_udp_port}", instance_group=pool.instance_group)
            for spec, pool in zip(cfg.swarm_pools, self.pools, strict=True)]
        return StackOutputs.model_construct(
            schema_version=SCHEMA_VERSION, project=cfg.gcp.project, rendezvous_ip=rv.external_ip,
            rendezvous_store_zones=cfg.store_zones,
            registry_endpoint=rv.endpoint(ports.registry), beacon_endpoint=rv.endpoint(ports.beacon),
            dashboard_url=rv.external_ip.apply(lambda ip: f"http://{ip}:{ports.dashboard}/"),
            stats_url=rv.external_ip.apply(lambda ip: f"http://{ip}:{ports.dashboard}{pilot.STATS_PATH}"),
            expected_agents=expected,
            expected_agents_by_host={h.name: h.total_agents for h in cfg.swarm_hosts},
            expected_agents_by_pool={p.name: p.total_agents for p in cfg.swarm_pools},
            alert_threshold=cfg.alert_threshold, alert_min_online=pilot.min_online(expected, cfg.alert_threshold),
            ports=PortsOutput.model_construct(registry=ports.registry, beacon=ports.beacon, dashboard=ports.dashboard,
                                              health=pilot.SUPERVISOR_HEALTH_PORT),
            hosts=hosts, pools=pools)
