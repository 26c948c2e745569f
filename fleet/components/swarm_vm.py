"""What every swarm VM shares, a host's or a pool's: the fleet-wide arguments, the attributes it boots from and its
supervisor follows live (by the VM contract's field names), the VM itself, and the firewall rule for exactly its
agents' UDP tunnel ports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from fleet.components.instance import FleetVm
from fleet.facts import names, pilot
from fleet.facts.pilot_releases import releases
from fleet.monitoring.ops_agent import ops_agent_metadata
from fleet.vm_contract import metadata


@dataclass(frozen=True, kw_only=True)
class SwarmVmArgs:
    """The fleet-wide part of every swarm VM."""

    project: str
    pilot_version: str
    registry: pulumi.Input[str]  # the rendezvous' registry endpoint, HOST:PORT
    beacon: pulumi.Input[str]
    new_registrations_per_minute: int
    health_threshold: float
    network: pulumi.Input[str]
    subnetwork: pulumi.Input[str]
    service_account_email: pulumi.Input[str]
    labels: Mapping[str, str]
    # the network named on each VM's interface (network.existing: the stack does not declare it; FleetVm.network)
    interface_network: pulumi.Input[str] | None = None
    # a Cloud KMS key (CMEK) for each VM's disks (FleetConfig.disk_kms_key)
    disk_kms_key: str | None = None
    # the registry certificate's fingerprint agents pin (RegistryTls); None: plaintext
    registry_fingerprint: pulumi.Input[str] | None = None
    # the Ops Agent release each VM's boot path installs, with the receiver of its supervisor's metrics
    ops_agent_version: str | None = None


@dataclass(frozen=True, kw_only=True)
class Registration:
    """Where one VM's agents register from (FleetConfig.registration_addresses): how many addresses, and the
    netmask of the alias IP range that gives it those past its own."""

    addresses: int = 1
    alias_prefix: int | None = None


@dataclass(frozen=True, kw_only=True)
class AgentVm:
    """One swarm VM as its components declare it (a host's, or each of a pool's): what it runs and how it paces its
    agents. The fleet fills it from the validated config (fleet/components/fleet.py)."""

    name: str
    machine_type: str
    target_agents: int
    max_target_agents: int  # its machine's memory budget, which the VM also holds a live target to
    pilot_version: str | None  # its own daemon version (a canary, a rollback); None: the fleet's
    base_udp_port: int
    spawn_parallelism: int
    round_delay_seconds: float
    gogc: int
    rollout_max_unavailable: float
    peer_source_ranges: Sequence[str]
    disk_gb: int
    state_disk_gb: int
    registration: Registration = field(default_factory=lambda: Registration())
    spot: bool = False  # Spot provisioning (FleetVm.spot)

    @property
    def last_udp_port(self) -> int:
        return self.base_udp_port + self.target_agents - 1


def swarm_metadata(fleet: SwarmVmArgs, vm: AgentVm) -> dict[str, pulumi.Input[str]]:
    """The swarm attributes (fleet/vm_contract.py SWARM_ATTRIBUTES) of VM."""
    version = vm.pilot_version or fleet.pilot_version  # a pool's or host's own release: a canary, a rollback
    return metadata(pilot.ROLE_SWARM, {
        "version": version,
        "daemon_release": releases()[version].attribute(),
        "target_agents": str(vm.target_agents),
        "max_target_agents": str(vm.max_target_agents),
        "registry": fleet.registry,
        "beacon": fleet.beacon,
        "base_udp_port": str(vm.base_udp_port),
        "spawn_parallelism": str(vm.spawn_parallelism),
        "round_delay_seconds": f"{vm.round_delay_seconds:g}",
        "new_registrations_per_minute": str(fleet.new_registrations_per_minute),
        "gogc": str(vm.gogc),
        "health_port": str(pilot.SUPERVISOR_HEALTH_PORT),
        "health_threshold": f"{fleet.health_threshold:g}",
        "rollout_max_unavailable": f"{vm.rollout_max_unavailable:g}",
        "registration_addresses": str(vm.registration.addresses),
        # the agents' identities live on their own disk, which outlives the VM
        "state_device": pilot.STATE_DEVICE,
        **({"registry_fingerprint": fleet.registry_fingerprint} if fleet.registry_fingerprint is not None else {}),
        **ops_agent_metadata(pilot.ROLE_SWARM, pilot.SUPERVISOR_HEALTH_PORT, fleet.ops_agent_version),
    })


def swarm_vm(fleet: SwarmVmArgs, vm: AgentVm, *, zone: str, labels: Mapping[str, str] | None = None,
             attached_disks: Sequence[gcp.compute.InstanceAttachedDiskArgs] = (),
             state_disk_gb: int | None = None) -> FleetVm:
    """The VM of a swarm host (its state disk attached), or the template of a pool's VMs (each VM's state disk made
    with it): hardened, tagged for its own firewall rules."""
    return FleetVm(
        name=vm.name, machine_type=vm.machine_type, zone=zone, project=fleet.project,
        subnetwork=fleet.subnetwork, network=fleet.interface_network, kms_key=fleet.disk_kms_key,
        service_account_email=fleet.service_account_email,
        metadata=swarm_metadata(fleet, vm),
        labels={**fleet.labels, "role": pilot.ROLE_SWARM, **(labels or {})},
        tags=[names.FLEET_TAG, names.swarm_tag(vm.name)], disk_gb=vm.disk_gb, attached_disks=list(attached_disks),
        state_disk_gb=state_disk_gb, alias_prefix=vm.registration.alias_prefix, spot=vm.spot,
    )


def agent_ports_firewall(fleet: SwarmVmArgs, vm: AgentVm, parent: pulumi.Resource) -> gcp.compute.Firewall:
    """Exactly the VM's agents' UDP tunnel ports, from the peers' ranges."""
    name = vm.name
    return gcp.compute.Firewall(
        names.agents_rule(name), name=names.agents_rule(name), project=fleet.project,
        network=fleet.network, direction="INGRESS",
        description=f"Pilot tunnel ports of {name}'s {vm.target_agents} agents per VM.",
        allows=[gcp.compute.FirewallAllowArgs(protocol="udp", ports=[f"{vm.base_udp_port}-{vm.last_udp_port}"])],
        source_ranges=list(vm.peer_source_ranges), target_tags=[names.swarm_tag(name)],
        opts=pulumi.ResourceOptions(parent=parent),
    )
