"""The cost frontier of a fleet of N agents: all on-demand, all Spot, and an on-demand floor with the rest on Spot.
For each: $ a month and per 1,000 agents a month, and what one preemption costs in agents offline and for how long.

What a preemption costs, from what is measured and what the supervisor does (SCALING.md "Spot swarms"): the VM's
agents stop within the supervisor's preemption deadline of the notice (bench/preemption_stop.py: 1,000 real daemons
gone in 4.8 s by SIGTERM), then the group recreates the VM on its state disk, and at boot the supervisor starts its
known identities in its paced rounds (no registry limit: they are not new). The recreation and boot of a Compute
Engine VM is not modelled: it is not measured here."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fleet.capacity.sizing import Assumptions, CostedFleet, recommend
from fleet.capacity.supervisor_code import supervisor_module
from fleet.facts import pilot

# A third of the agents on on-demand VMs: the shipped spot stack's floor (3,300 of 9,600 in Pulumi.spot.yaml).
DEFAULT_FLOOR_SHARE = 1 / 3


@dataclass(frozen=True)
class Preemption:
    agents_offline: int  # one preempted VM: the largest Spot VM's target
    stop_seconds: float  # every agent gone by then after the notice (the supervisor's deadline)
    restart_seconds: float  # after its boot, the VM's known identities in paced rounds

    def render(self) -> str:
        return (f"one preemption: {self.agents_offline:,} agents offline, stopped within {self.stop_seconds:g} s, "
                f"back {self.restart_seconds:,.0f} s after the VM's recreation and boot (not modelled)")


@dataclass(frozen=True)
class Option:
    name: str
    fleet: CostedFleet  # its VMs, on-demand and Spot lines together (what --write-stack writes)
    preemption: Preemption | None
    floor_agents: int  # on-demand agents: what stays up if every Spot VM is reclaimed at once


def option(name: str, parts: list[CostedFleet], requested: int) -> Option:
    fleet = CostedFleet(name, [line for part in parts for line in part.lines], requested)
    floor = sum(line.agents for line in fleet.lines if not line.spot)
    return Option(name, fleet, preemption_of(fleet), floor)


def preemption_of(fleet: CostedFleet) -> Preemption | None:
    """What one preemption of FLEET's busiest Spot VM costs, by the supervisor's preemption deadline and its default
    rounds; None for a fleet without Spot VMs."""
    spot = [line for line in fleet.lines if line.spot]
    if not spot:
        return None
    config = supervisor_module("config").Config
    busiest = max(line.target_agents for line in spot)
    rounds = math.ceil(busiest / pilot.DEFAULT_SPAWN_PARALLELISM)
    return Preemption(busiest, config.preempt_stop_seconds, rounds * pilot.DEFAULT_ROUND_DELAY_SECONDS)


def frontier(agents: int, a: Assumptions, floor_share: float = DEFAULT_FLOOR_SHARE) -> list[Option]:
    """All on-demand, all Spot, and (for 0 < FLOOR_SHARE < 1) FLOOR_SHARE of the agents on on-demand VMs, the rest
    on Spot, each part the cheapest of its kind, no VM above max_share of the whole fleet."""
    options = [option("all on-demand", [recommend(agents, a)], agents),
               option("all Spot", [recommend(agents, a, spot=True)], agents)]
    floor = math.ceil(agents * floor_share)
    if 0 < floor < agents:
        options.append(option(f"on-demand floor of {floor_share:.0%} + Spot",
                              [recommend(floor, a, fleet_agents=agents),
                               recommend(agents - floor, a, spot=True, fleet_agents=agents)], agents))
    return options


def render(agents: int, options: list[Option], spot_date: str, currency: str = "$") -> str:
    out = [f"cost frontier for {agents:,} agents (Spot rates of {spot_date}, fleet/facts/data/prices.yaml; Spot "
           "prices move, up to once a day)"]
    for each in options:
        fleet = each.fleet
        shapes = " + ".join(f"{line.count} x {line.capacity.machine.name}{' (spot)' if line.spot else ''}"
                            for line in fleet.lines)
        out.append(f"  {each.name:<30} {currency}{fleet.monthly:>7,.0f} a month, "
                   f"{currency}{fleet.per_thousand:>6,.2f} per 1,000 agents: {shapes}")
        if each.preemption:
            out.append(f"  {'':<30} {each.preemption.render()}; {each.floor_agents:,} agents on on-demand VMs "
                       "stay up whatever Spot does")
    return "\n".join(out) + "\n"
