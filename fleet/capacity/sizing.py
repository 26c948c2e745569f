"""The capacity and cost planner: the cheapest mix of machine types for N agents, with per-VM targets, cost, and
the limit that binds each VM (memory, PIDs, UDP ports, file descriptors, failure-domain share)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fleet.config.model import FleetConfig
from fleet.facts import pilot
from fleet.facts.machine_types import MachineType, lookup, machine_types
from fleet.facts.memory_budget import MemoryBudget
from fleet.facts.prices import PriceTable, price_table


@dataclass(frozen=True)
class Assumptions:
    region: str = "us-central1"
    agent_memory_mb: float = pilot.DEFAULT_AGENT_MEMORY_MB
    headroom_percent: float = pilot.DEFAULT_HEADROOM_PERCENT
    os_reserve_mb: int = pilot.DEFAULT_OS_RESERVE_MB
    # An absolute reserve for a burst of connections on one VM (the seed: 800 connections x 4 MB).
    burst_connections: int = 0
    connection_mb: float = 4.0
    # Failure domains: no VM may hold more than this share of all agents.
    max_share: float = 0.10
    base_udp_port: int = pilot.DEFAULT_BASE_UDP_PORT
    new_registrations_per_minute: int = pilot.NEW_REGISTRATIONS_PER_MINUTE
    # No measured CPU ceiling exists for idle agents (the seed ran about 190 per vCPU); 0 leaves CPU out.
    max_agents_per_vcpu: int = 0
    # Every swarm VM's disks, priced with it: its boot disk and its agent state disk.
    disk_gb: int = pilot.DEFAULT_BOOT_DISK_GB + pilot.DEFAULT_STATE_DISK_GB

    @property
    def reserve_mb(self) -> int:
        return self.os_reserve_mb + math.ceil(self.burst_connections * self.connection_mb)


@dataclass(frozen=True)
class VmCapacity:
    machine: MachineType
    agents: int
    binding: str
    limits: dict[str, int]


def vm_capacity(machine: MachineType, a: Assumptions, share_cap: int | None = None) -> VmCapacity:
    limits = {
        "memory": MemoryBudget(machine.memory_mb, a.reserve_mb, a.agent_memory_mb, a.headroom_percent).max_agents(),
        "PIDs": pilot.KERNEL_PID_MAX // pilot.THREADS_PER_AGENT,
        # one UDP port each, base + index, kept below the kernel's ephemeral range
        "UDP ports": max(pilot.EPHEMERAL_PORT_RANGE[0] - a.base_udp_port, 0),
        "file descriptors": pilot.KERNEL_FILE_MAX // pilot.FDS_PER_AGENT,
    }
    if share_cap is not None:
        limits["failure-domain share"] = share_cap
    if a.max_agents_per_vcpu:
        limits["vCPUs"] = machine.vcpus * a.max_agents_per_vcpu
    binding = min(limits, key=lambda k: limits[k])
    return VmCapacity(machine, limits[binding], binding, limits)


@dataclass(frozen=True)
class Line:
    capacity: VmCapacity
    count: int
    target_agents: int
    monthly_per_vm: float
    spot: bool = False  # Spot VMs, priced at the Spot rates

    @property
    def agents(self) -> int:
        return self.count * self.target_agents

    @property
    def monthly(self) -> float:
        return self.count * self.monthly_per_vm


@dataclass(frozen=True)
class CostedFleet:
    """Swarm VMs by machine type with their cost: a recommendation, or an existing stack's hosts and pools."""

    title: str
    lines: list[Line]
    requested: int
    notes: list[str] = field(default_factory=list)

    @property
    def agents(self) -> int:
        return sum(line.agents for line in self.lines)

    @property
    def vms(self) -> int:
        return sum(line.count for line in self.lines)

    @property
    def monthly(self) -> float:
        return sum(line.monthly for line in self.lines)

    @property
    def per_thousand(self) -> float:
        return self.monthly / self.agents * 1000 if self.agents else 0.0


class PlanningError(Exception):
    pass


def vm_monthly(machine: MachineType, disk_gb: int, region: str, prices: PriceTable,
               spot: bool = False) -> float | None:
    """A swarm VM a month: its machine type (on-demand, or Spot) and its disks (boot and agent state, pd-balanced,
    the same price for a Spot VM)."""
    machine_monthly = prices.monthly(machine, region, spot)
    disks = prices.disk_monthly(pilot.DISK_TYPE, disk_gb, region)
    return None if machine_monthly is None or disks is None else machine_monthly + disks


def _candidates(a: Assumptions, share_cap: int, prices: PriceTable, spot: bool) -> list[tuple[VmCapacity, float]]:
    found = []
    for machine in machine_types().values():
        monthly = vm_monthly(machine, a.disk_gb, a.region, prices, spot)
        if monthly is None:
            continue
        cap = vm_capacity(machine, a, share_cap)
        if cap.agents > 0:
            found.append((cap, monthly))
    return found


def recommend(agents: int, a: Assumptions, prices: PriceTable | None = None, *, spot: bool = False,
              fleet_agents: int | None = None, title: str = "") -> CostedFleet:
    """Cheapest fleet: VMs of one type, or of one type plus one smaller VM for the remainder; SPOT prices it at the
    Spot rates. No VM holds more than max_share of FLEET_AGENTS (default: AGENTS; a part of a fleet, such as its
    on-demand floor, is held to the share of the whole fleet)."""
    if agents <= 0:
        raise PlanningError("the number of agents must be positive")
    if not 0 < a.max_share <= 1:
        raise PlanningError("the failure-domain share must be in (0, 1]")
    prices = prices or price_table()
    prices.require_region(a.region, spot)
    share_cap = max(1, math.floor((fleet_agents or agents) * a.max_share))
    candidates = _candidates(a, share_cap, prices, spot)
    if not candidates:
        raise PlanningError("no priced machine type can hold a single agent with these figures")
    best: tuple[float, int, list[tuple[VmCapacity, float, int, int]]] | None = None
    for cap, monthly in candidates:
        count = math.ceil(agents / cap.agents)
        options = [[(cap, monthly, count, math.ceil(agents / count))]]
        bulk, remainder = divmod(agents, cap.agents)
        if bulk and remainder:
            for other, other_monthly in candidates:
                if other.agents >= remainder and other_monthly < monthly:
                    options.append([(cap, monthly, bulk, cap.agents), (other, other_monthly, 1, remainder)])
        for option in options:
            cost = sum(m * n for _, m, n, _ in option)
            vms = sum(n for _, _, n, _ in option)
            if best is None or (round(cost, 6), vms) < (round(best[0], 6), best[1]):
                best = (cost, vms, option)
    assert best is not None
    lines = [Line(cap, count, target_agents, monthly, spot) for cap, monthly, count, target_agents in best[2]]
    fleet = CostedFleet(title or f"recommended for {agents:,} agents", lines, agents)
    return _with_notes(fleet, a)


# The seed fleet ran about 190 agents per vCPU (3,000 on 16, 1,500 on 8); nothing measured goes beyond that.
SEED_AGENTS_PER_VCPU = 190


def _with_notes(fleet: CostedFleet, a: Assumptions, one_address: bool = True) -> CostedFleet:
    densest = max(line.target_agents / line.capacity.machine.vcpus for line in fleet.lines)
    if densest > SEED_AGENTS_PER_VCPU and not a.max_agents_per_vcpu:
        fleet.notes.append(f"up to {densest:,.0f} agents per vCPU, above the seed's ~{SEED_AGENTS_PER_VCPU}: "
                           "no CPU measurement backs that; --max-agents-per-vcpu caps it")
    busiest = max(line.target_agents for line in fleet.lines)
    hours = busiest / a.new_registrations_per_minute / 60
    if one_address:  # a stack's own registration addresses: its cold start below says what they take
        fleet.notes.append(
            f"first registration of {busiest:,} fresh identities on one VM from one address at the registry's "
            f"{a.new_registrations_per_minute} new per minute per source IP: {hours:.1f} h (re-registration after a "
            "reboot is not limited; --cold-start-minutes sizes the addresses and rounds that shorten it)")
    return fleet


def from_stack(cfg: FleetConfig, stack: str, region: str | None = None,
               prices: PriceTable | None = None, all_spot: bool = False) -> CostedFleet:
    """The same figures for an existing stack's swarm hosts and pools, with its own memory settings, each priced by
    its provisioning (with ALL_SPOT: every one at the Spot rates)."""
    prices = prices or price_table()
    region = region or cfg.gcp.region
    prices.require_region(region, all_spot)
    lines = []
    for vm, count in [*((h, 1) for h in cfg.swarm_hosts), *((p, p.size) for p in cfg.swarm_pools)]:
        lines.append(_stack_line(cfg, vm.machine_type, vm.agent_memory_mb, vm.base_udp_port, count, vm.target_agents,
                                 vm.disk_gb + vm.state_disk_gb, region, prices, all_spot or vm.provisioning == "spot"))
    fleet = CostedFleet(f"stack {stack}{' on Spot' if all_spot else ''}", lines, cfg.expected_agents)
    return _with_notes(fleet, Assumptions(new_registrations_per_minute=cfg.rendezvous.new_registrations_per_minute),
                       one_address=False)


def _stack_line(cfg: FleetConfig, machine_type: str, agent_mb: float, base_port: int, count: int, target_agents: int,
                disk_gb: int, region: str, prices: PriceTable, spot: bool = False) -> Line:
    machine = lookup(machine_type)
    if machine is None:
        raise PlanningError(f"machine type {machine_type!r} is not in fleet/facts/data/machine_types.yaml")
    monthly = vm_monthly(machine, disk_gb, region, prices, spot)
    if monthly is None:
        raise PlanningError(f"no {'Spot ' if spot else ''}price for {machine_type} or its disks in {region} "
                            "(fleet/facts/data/prices.yaml)")
    a = Assumptions(region=region, agent_memory_mb=agent_mb, headroom_percent=cfg.memory.headroom_percent,
                    os_reserve_mb=cfg.memory.os_reserve_mb, base_udp_port=base_port)
    return Line(vm_capacity(machine, a), count, target_agents, monthly, spot)


def render(fleets: list[CostedFleet], currency: str = "$") -> str:
    out = []
    for fleet in fleets:
        out.append(f"{fleet.title}: {fleet.agents:,} agents on {fleet.vms} VMs, {currency}{fleet.monthly:,.0f} a "
                   f"month, {currency}{fleet.per_thousand:,.2f} per 1,000 agents a month")
        out.append(f"  {'machine type':<20} {'VMs':>4} {'agents/VM':>10} {'ceiling':>8} {'binding limit':<21} "
                   f"{'agents/vCPU':>11} {'$/month':>10}")
        for line in fleet.lines:
            cap = line.capacity
            name = cap.machine.name + (" (spot)" if line.spot else "")
            out.append(f"  {name:<20} {line.count:>4} {line.target_agents:>10,} {cap.agents:>8,} "
                       f"{cap.binding:<21} {line.target_agents / cap.machine.vcpus:>11,.0f} {line.monthly:>10,.0f}")
        out.extend(f"  note: {note}" for note in fleet.notes)
        out.append("")
    return "\n".join(out).rstrip() + "\n"
