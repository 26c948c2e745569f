"""The cold start of a stack or of a recommended fleet, VM by VM, and what a budget takes: the part of
`python -m fleet capacity` that answers "how long until every agent is registered from nothing"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleet.capacity.cold_start import (
    FleetColdStart,
    Pacing,
    budget_needs,
    fleet_cold_start,
    vm_cold_start,
)
from fleet.capacity.sizing import CostedFleet
from fleet.config.model import FleetConfig
from fleet.facts import pilot
from fleet.facts.rendezvous_capacity import RendezvousCapacity, rendezvous_capacity


@dataclass(frozen=True)
class VmColdStart:
    name: str
    count: int
    pacing: Pacing
    seconds: float
    # what the budget takes: the rounds and the addresses (None: nothing within the bounds does)
    needs_parallelism: int | None
    needs_addresses: int | None

    def json(self) -> dict[str, Any]:
        p = self.pacing
        return {"name": self.name, "count": self.count, "targetAgents": p.target_agents,
                "registrationAddresses": p.addresses, "spawnParallelism": p.spawn_parallelism,
                "roundDelaySeconds": p.round_delay_seconds, "newRegistrationsPerMinute": p.per_minute,
                "coldStartSeconds": round(self.seconds, 1),
                "floorByAddressesSeconds": round(p.floor_by_addresses(), 1),
                "floorByRoundsSeconds": round(p.floor_by_rounds(), 1),
                "forBudget": {"spawnParallelism": self.needs_parallelism,
                              "registrationAddresses": self.needs_addresses}}


@dataclass(frozen=True)
class ColdStartPlan:
    title: str
    budget_seconds: float | None
    agent_reach: str
    vms: list[VmColdStart]
    fleet: FleetColdStart
    capacity: RendezvousCapacity  # of its registry's transport

    def json(self) -> dict[str, Any]:
        capacity = self.capacity
        return {"title": self.title, "agentReach": self.agent_reach,
                "coldStartSeconds": round(self.fleet.seconds, 1),
                "coldStartBudgetSeconds": self.budget_seconds,
                "withinBudget": None if self.budget_seconds is None else self.fleet.seconds <= self.budget_seconds,
                "rendezvous": {"transport": capacity.transport_name,
                               "registrationsPerSecondMeasured": capacity.registrations_per_second,
                               "identitiesMeasured": capacity.measured_identities,
                               "peakRegistrationsPerSecond": round(self.fleet.peak_per_second, 1),
                               "backToBackVms": self.fleet.back_to_back,
                               "coldStartSeconds": round(self.fleet.rendezvous_seconds, 1)},
                "vms": [vm.json() for vm in self.vms], "notes": list(self.fleet.notes)}

    def render(self) -> str:
        out = [f"cold start of {self.title} (every identity new to the registry): "
               f"{self.fleet.seconds:,.0f} s" + (f", budget {self.budget_seconds:,.0f} s" if self.budget_seconds
                                                 else "")]
        out.append(f"  {'VM':<24} {'VMs':>4} {'agents':>7} {'addresses':>9} {'round':>6} {'delay':>6} "
                   f"{'seconds':>8}   for the budget")
        for vm in self.vms:
            p = vm.pacing
            need = ""
            if self.budget_seconds is not None:
                need = (f"round {vm.needs_parallelism or 'too large'}, addresses {vm.needs_addresses or 'too many'}"
                        if vm.seconds > self.budget_seconds else "met")
            out.append(f"  {vm.name:<24} {vm.count:>4} {p.target_agents:>7,} {p.addresses:>9} "
                       f"{p.spawn_parallelism:>6} {p.round_delay_seconds:>6g} {vm.seconds:>8,.0f}   {need}")
        unpaced = f" (and {self.fleet.back_to_back} VMs with rounds back to back)" if self.fleet.back_to_back else ""
        out.append(f"  rendezvous: {self.fleet.peak_per_second:,.0f} registrations a second offered at the start"
                   f"{unpaced}; "
                   f"measured {self.capacity.registrations_per_second:,} a second over "
                   f"{self.capacity.transport_name} up to {self.capacity.measured_identities:,} identities "
                   "(bench/RESULTS.md)")
        out.extend(f"  note: {note}" for note in self.fleet.notes)
        return "\n".join(out) + "\n"


def _vm(name: str, count: int, pacing: Pacing, budget: float | None) -> VmColdStart:
    needs = budget_needs(pacing, budget) if budget is not None else None
    return VmColdStart(name, count, pacing, vm_cold_start(pacing), needs and needs.spawn_parallelism,
                       needs and needs.addresses)


def _plan(title: str, budget: float | None, reach: str, vms: list[VmColdStart], tls: bool) -> ColdStartPlan:
    capacity = rendezvous_capacity().transport(tls)
    return ColdStartPlan(title, budget, reach, vms,
                         fleet_cold_start([(vm.pacing, vm.count) for vm in vms], capacity), capacity)


def for_stack(cfg: FleetConfig, stack: str, budget_minutes: float | None = None) -> ColdStartPlan:
    """A stack as configured (its registration addresses sized as the program sizes them), against its own
    coldStartMinutes or BUDGET_MINUTES."""
    minutes = budget_minutes if budget_minutes is not None else cfg.cold_start_minutes
    budget = minutes * 60 if minutes is not None else None
    vms = [_vm(h.name, 1, cfg.pacing(h), budget) for h in cfg.swarm_hosts]
    vms += [_vm(p.name, p.size, cfg.pacing(p), budget) for p in cfg.swarm_pools]
    return _plan(f"stack {stack}", budget, cfg.agent_reach, vms, cfg.registry.tls)


def for_recommendation(fleet: CostedFleet, per_minute: int, budget_minutes: float | None) -> ColdStartPlan:
    """A recommended fleet at the default pacing from one address each, and what BUDGET_MINUTES takes."""
    budget = budget_minutes * 60 if budget_minutes is not None else None
    vms = [_vm(line.capacity.machine.name, line.count,
               Pacing(line.target_agents, 1, per_minute, pilot.DEFAULT_SPAWN_PARALLELISM,
                      pilot.DEFAULT_ROUND_DELAY_SECONDS), budget) for line in fleet.lines]
    return _plan(fleet.title, budget, "internet", vms, tls=True)  # registry TLS: on for new stacks
