"""A swarm pool: identical swarm VMs in a managed instance group. Compute Engine does the autohealing, the
rolling updates and the spreading over zones; the fleet supplies the template and the supervisor's health."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from fleet.components.instance import FleetVm
from fleet.components.network import FLEET_TAG, FleetNetwork, swarm_tag
from fleet.components.rendezvous import Rendezvous
from fleet.components.swarm_vm import agent_ports_firewall, swarm_metadata
from fleet.config.model import FleetConfig, SwarmPoolConfig
from fleet.facts import pilot

# A metadata-only change of the template (a new target, daemon version, pacing) is applied to the pool's VMs in
# place: REFRESH updates their metadata without a restart, and each VM's supervisor converges live (day two). A
# change that needs more (image, machine type) is still carried out, up to replacing the VM.
MINIMAL_ACTION = "REFRESH"


class SwarmPool(pulumi.ComponentResource):
    instance_group: pulumi.Output[str]

    def __init__(self, cfg: FleetConfig, pool: SwarmPoolConfig, network: FleetNetwork, rendezvous: Rendezvous,
                 service_account_email: pulumi.Input[str], labels: dict[str, str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pilot-fleet:fleet:SwarmPool", pool.name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        project, tag = cfg.gcp.project, swarm_tag(pool.name)
        self.zones = cfg.zones_of(pool)
        # role and per-VM agent target as metadata attributes; the project-level script does the rest
        template = FleetVm(
            name=pool.name, machine_type=pool.machine_type, zone=self.zones[0], project=project,
            subnetwork=network.subnetwork, service_account_email=service_account_email,
            metadata=swarm_metadata(cfg, pool, pool.target_agents, rendezvous),
            labels={**labels, "role": pilot.ROLE_SWARM, pilot.POOL_LABEL: pool.name}, tags=[FLEET_TAG, tag],
            disk_gb=pool.disk_gb, state_disk_gb=pool.state_disk_gb,
        ).declare_template(self)
        agent_ports_firewall(pool.name, cfg, pool, pool.target_agents, tag, network, self)
        # The supervisor's /healthz: 200 once running >= target x threshold, and while its paced start-up
        # (bounded by the registry's new-identity rate) is still on schedule.
        health = gcp.compute.HealthCheck(
            f"{pool.name}-health", name=f"{pool.name}-health", project=project,
            description=f"pilot-fleet supervisor health of {pool.name}'s VMs",
            http_health_check=gcp.compute.HealthCheckHttpHealthCheckArgs(
                port=pilot.SUPERVISOR_HEALTH_PORT, request_path=pilot.SUPERVISOR_HEALTH_PATH),
            check_interval_sec=30, timeout_sec=10, healthy_threshold=2, unhealthy_threshold=10, opts=child)
        gcp.compute.Firewall(
            f"{pool.name}-allow-health-checks", name=f"{pool.name}-allow-health-checks", project=project,
            network=network.network, direction="INGRESS",
            description=f"Google's health checkers to {pool.name}'s supervisors ({pilot.SUPERVISOR_HEALTH_PORT}/tcp).",
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=[str(pilot.SUPERVISOR_HEALTH_PORT)])],
            source_ranges=list(pilot.HEALTH_CHECK_RANGES), target_tags=[tag], opts=child)
        unavailable = pool.unavailable(len(self.zones))
        # Each VM's agent state disk is stateful: kept when autohealing or a rolling update recreates the VM
        # (under its own name, so no surge), never deleted with it.
        stateful = [{"device_name": pilot.STATE_DEVICE, "delete_rule": "NEVER"}]
        common = {
            "name": pool.name, "project": project, "base_instance_name": pool.name,
            "target_size": pool.size, "description": f"{pool.size} x {pool.target_agents} agents",
        }
        version = {"instance_template": template.self_link, "name": "primary"}
        if len(self.zones) == 1:
            group = gcp.compute.InstanceGroupManager(
                pool.name, zone=self.zones[0], **common,
                versions=[gcp.compute.InstanceGroupManagerVersionArgs(**version)],
                stateful_disks=[gcp.compute.InstanceGroupManagerStatefulDiskArgs(**d) for d in stateful],
                auto_healing_policies=gcp.compute.InstanceGroupManagerAutoHealingPoliciesArgs(
                    health_check=health.id, initial_delay_sec=pilot.AUTOHEALING_INITIAL_DELAY_SECONDS),
                update_policy=gcp.compute.InstanceGroupManagerUpdatePolicyArgs(
                    type="PROACTIVE", minimal_action=MINIMAL_ACTION, most_disruptive_allowed_action="REPLACE",
                    replacement_method="RECREATE", max_surge_fixed=0, max_unavailable_fixed=unavailable),
                opts=child)
        else:
            group = gcp.compute.RegionInstanceGroupManager(
                pool.name, region=cfg.gcp.region, distribution_policy_zones=self.zones, **common,
                versions=[gcp.compute.RegionInstanceGroupManagerVersionArgs(**version)],
                stateful_disks=[gcp.compute.RegionInstanceGroupManagerStatefulDiskArgs(**d) for d in stateful],
                auto_healing_policies=gcp.compute.RegionInstanceGroupManagerAutoHealingPoliciesArgs(
                    health_check=health.id, initial_delay_sec=pilot.AUTOHEALING_INITIAL_DELAY_SECONDS),
                update_policy=gcp.compute.RegionInstanceGroupManagerUpdatePolicyArgs(
                    type="PROACTIVE", minimal_action=MINIMAL_ACTION, most_disruptive_allowed_action="REPLACE",
                    replacement_method="RECREATE", max_surge_fixed=0, max_unavailable_fixed=unavailable,
                    # a stateful regional group does not move VMs between zones (their disks are zonal)
                    instance_redistribution_type="NONE"),
                opts=child)
        self.instance_group = group.instance_group
        self.register_outputs({"instanceGroup": self.instance_group})
