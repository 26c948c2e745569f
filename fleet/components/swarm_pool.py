"""A swarm pool: identical swarm VMs in a managed instance group. Compute Engine does the autohealing, the
rolling updates and the spreading over zones; the fleet supplies the template and the supervisor's health."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from fleet.components.swarm_vm import AgentVm, SwarmVmArgs, agent_ports_firewall, swarm_vm
from fleet.facts import names, pilot

# A metadata-only change of the template (a new target, daemon version, pacing) is applied to the pool's VMs in
# place: REFRESH updates their metadata without a restart, and each VM's supervisor converges live (day two). A
# change that needs more (image, machine type) is still carried out, up to replacing the VM.
MINIMAL_ACTION = "REFRESH"


@dataclass(frozen=True, kw_only=True)
class SwarmPoolArgs:
    fleet: SwarmVmArgs
    vm: AgentVm  # each of its VMs
    size: int
    max_unavailable: int  # VMs a rolling update takes down at once
    zones: Sequence[str]  # one: a zonal group; more: a regional group across them
    region: str


def _group(name: str, args: SwarmPoolArgs, template: pulumi.Output[str], health: pulumi.Output[str],
           opts: pulumi.ResourceOptions) -> gcp.compute.InstanceGroupManager | gcp.compute.RegionInstanceGroupManager:
    """The managed group, zonal or regional: the same declaration, in the API's two shapes."""
    vm, zones = args.vm, list(args.zones)
    regional = len(zones) > 1
    api = gcp.compute.RegionInstanceGroupManager if regional else gcp.compute.InstanceGroupManager
    prefix = "RegionInstanceGroupManager" if regional else "InstanceGroupManager"
    arg = {kind: getattr(gcp.compute, f"{prefix}{kind}Args")
           for kind in ("Version", "StatefulDisk", "AutoHealingPolicies", "UpdatePolicy")}
    where: dict[str, Any] = {"region": args.region, "distribution_policy_zones": zones} if regional else \
        {"zone": zones[0]}
    update: dict[str, Any] = {
        "type": "PROACTIVE", "minimal_action": MINIMAL_ACTION, "most_disruptive_allowed_action": "REPLACE",
        "replacement_method": "RECREATE", "max_surge_fixed": 0, "max_unavailable_fixed": args.max_unavailable,
        # a stateful regional group does not move VMs between zones (their disks are zonal)
        **({"instance_redistribution_type": "NONE"} if regional else {})}
    return api(
        name, name=name, project=args.fleet.project, base_instance_name=name, target_size=args.size,
        description=f"{args.size} x {vm.target_agents} agents", **where,
        versions=[arg["Version"](instance_template=template, name="primary")],
        # Each VM's agent state disk is stateful: kept when autohealing or a rolling update recreates the VM (under
        # its own name, so no surge), never deleted with it.
        stateful_disks=[arg["StatefulDisk"](device_name=pilot.STATE_DEVICE, delete_rule="NEVER")],
        auto_healing_policies=arg["AutoHealingPolicies"](
            health_check=health, initial_delay_sec=pilot.AUTOHEALING_INITIAL_DELAY_SECONDS),
        update_policy=arg["UpdatePolicy"](**update),
        opts=opts)


class SwarmPool(pulumi.ComponentResource):
    instance_group: pulumi.Output[str]

    def __init__(self, name: str, args: SwarmPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pilot-fleet:fleet:SwarmPool", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        fleet, vm, tag = args.fleet, args.vm, names.swarm_tag(name)
        self.zones = list(args.zones)
        # role and per-VM agent target as metadata attributes; the project-level script does the rest
        template = swarm_vm(fleet, vm, zone=self.zones[0], labels={pilot.POOL_LABEL: name},
                            state_disk_gb=vm.state_disk_gb).declare_template(self)
        agent_ports_firewall(fleet, vm, self)
        # The supervisor's /healthz: 200 once running >= target x threshold, and while its paced start-up
        # (bounded by the registry's new-identity rate) is still on schedule.
        health = gcp.compute.HealthCheck(
            names.health_check(name), name=names.health_check(name), project=fleet.project,
            description=f"pilot-fleet supervisor health of {name}'s VMs",
            http_health_check=gcp.compute.HealthCheckHttpHealthCheckArgs(
                port=pilot.SUPERVISOR_HEALTH_PORT, request_path=pilot.SUPERVISOR_HEALTH_PATH),
            check_interval_sec=30, timeout_sec=10, healthy_threshold=2, unhealthy_threshold=10, opts=child)
        gcp.compute.Firewall(
            names.health_checks_rule(name), name=names.health_checks_rule(name), project=fleet.project,
            network=fleet.network, direction="INGRESS",
            description=f"Google's health checkers to {name}'s supervisors ({pilot.SUPERVISOR_HEALTH_PORT}/tcp).",
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=[str(pilot.SUPERVISOR_HEALTH_PORT)])],
            source_ranges=list(pilot.HEALTH_CHECK_RANGES), target_tags=[tag], opts=child)
        group = _group(name, args, template.self_link, health.id, child)
        self.instance_group = group.instance_group
        self.register_outputs({"instanceGroup": self.instance_group})
