"""The cold start: how long until every agent of a fleet is registered when the registry knows none of their
identities (the first `pulumi up`, a lost store), and what a budget for it takes.

Three things bound it, each modelled as it is:
  * the registry's bucket per registration address: the public rendezvous admits `rate` new identities a minute
    per source IP, from a bucket that holds `rate` tokens (pkg/registry/server.go, NewRateLimiter / Allow);
  * the supervisor's pacing: at most `spawn_parallelism` starts per round, rounds `round_delay_seconds` apart, each
    agent on its own address (index mod addresses) drawing on that address's bucket, which starts refilling
    REGISTRATION_LAG_SECONDS after a take from full (startup/pilot_supervisor/pacing.py);
  * what one rendezvous takes: its measured registrations per second (fleet/facts/data/rendezvous_capacity.yaml,
    from bench/rendezvous_capacity.py), shared by every VM starting at once.

`vm_cold_start` replays the supervisor's rounds against the buckets (no closed form holds once pacing and buckets
both bind); the whole-fleet test checks its figure against a real host.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from fleet.capacity.supervisor_code import supervisor_module
from fleet.facts.pilot import MAX_SPAWN_PARALLELISM
from fleet.facts.rendezvous_capacity import RendezvousCapacity
from fleet.vm_contract import MAX_REGISTRATION_ADDRESSES, REGISTRATION_LAG_SECONDS

# The supervisor's own bucket per address and its tick (startup/pilot_supervisor/): the model replays them, it does
# not copy them.
_pacing, _config = supervisor_module("pacing"), supervisor_module("config")
TokenBucket = _pacing.TokenBucket
# Without a token the supervisor tries again at its next tick.
TICK_SECONDS: float = next(f.default for f in dataclasses.fields(_config.Config) if f.name == "tick_seconds")
# How long a started pilot-daemon takes to be registered (connect, register, open its socket): under a second in
# the whole-fleet test bed; the last round's agents add it to the cold start.
REGISTRATION_SECONDS = 1.0
# Sizing leaves this much slack under a budget: the whole-fleet test holds the model to 1.1x of a real host.
SIZING_SLACK = 1.1


@dataclass(frozen=True)
class Pacing:
    """What one swarm VM does at a cold start: TARGET_AGENTS fresh identities, after KNOWN ones (identities the
    registry knows, started first: each takes a token from its address's bucket where there is one, as the registry
    takes one from a known key whenever it can, but none waits for one)."""

    target_agents: int
    addresses: int
    per_minute: float
    spawn_parallelism: int
    round_delay_seconds: float
    known: int = 0

    def floor_by_addresses(self) -> float:
        """The registry's floor alone: the busiest address's identities past its burst, one per 60/rate s."""
        busiest = math.ceil(self.target_agents / self.addresses)
        return max(0, busiest - self.per_minute) * 60 / self.per_minute

    def floor_by_rounds(self) -> float:
        """The pacing floor alone: one round per delay, and the last round's registration."""
        rounds = math.ceil(self.target_agents / self.spawn_parallelism)
        return (rounds - 1) * self.round_delay_seconds + REGISTRATION_SECONDS if rounds else 0.0


def _spread(count: int, addresses: int, first: int = 0) -> list[int]:
    """COUNT agents by address, indices FIRST.. (agent i registers from address i mod addresses)."""
    out = [0] * addresses
    for index in range(first, first + count):
        out[index % addresses] += 1
    return out


def vm_cold_start(p: Pacing) -> float:
    """Seconds from the first start until the last of `target_agents` fresh identities is registered (the known
    ones, started first, are registered sooner)."""
    if p.target_agents <= 0:
        return 0.0
    # one bucket per address, as the supervisor keeps it (and the registry, per source IP)
    buckets = [TokenBucket(p.per_minute, max(1, int(p.per_minute)), 0.0, REGISTRATION_LAG_SECONDS)
               for _ in range(p.addresses)]
    known, remaining = 0, _spread(p.target_agents, p.addresses, p.known)
    now, last, left, cursor = 0.0, 0.0, p.target_agents, 0
    while left:
        started = fresh_started = 0
        # Known identities first (the supervisor starts them before the fresh ones, by index): a token each where
        # there is one, and none waits for one
        while known < p.known and started < p.spawn_parallelism:
            buckets[known % p.addresses].take(now)
            known += 1
            started += 1
        # The supervisor walks the missing agents by index (address = index mod addresses), skipping those whose
        # address has no token, until the round is full: the addresses in turn, as often as tokens allow.
        while started < p.spawn_parallelism:
            took, first = False, cursor
            for step in range(p.addresses):
                k = (first + step) % p.addresses
                if started >= p.spawn_parallelism:
                    break
                if remaining[k] and buckets[k].take(now):
                    remaining[k] -= 1
                    started += 1
                    fresh_started += 1
                    took, cursor = True, (k + 1) % p.addresses
            if not took:
                break
        if started:
            left -= fresh_started
            last = now if fresh_started else last
            now += p.round_delay_seconds
        else:  # no token anywhere: the first tick after the next one arrives
            wait = min(buckets[k].seconds_to_token(now) for k in range(p.addresses) if remaining[k])
            now += max(TICK_SECONDS, math.ceil(wait / TICK_SECONDS) * TICK_SECONDS)
    return last + REGISTRATION_SECONDS


def addresses_for(p: Pacing, budget_seconds: float, most: int) -> int | None:
    """The fewest addresses (1..most) with which this VM's cold start fits the budget, with SIZING_SLACK; None: no
    count does."""
    budget_seconds /= SIZING_SLACK
    low, high = 1, most
    if vm_cold_start(_with(p, addresses=high)) > budget_seconds:
        return None
    while low < high:
        mid = (low + high) // 2
        if vm_cold_start(_with(p, addresses=mid)) <= budget_seconds:
            high = mid
        else:
            low = mid + 1
    return low


def parallelism_for(p: Pacing, budget_seconds: float, most: int) -> int | None:
    """The smallest round (spawn_parallelism, up to `most`) that lets the rounds alone fit the budget, with
    SIZING_SLACK."""
    budget_seconds /= SIZING_SLACK
    if budget_seconds < REGISTRATION_SECONDS:
        return None
    if p.round_delay_seconds == 0:  # rounds back to back: they never bind
        return 1
    rounds = math.floor((budget_seconds - REGISTRATION_SECONDS) / p.round_delay_seconds) + 1
    needed = max(1, math.ceil(p.target_agents / rounds))
    return needed if needed <= most else None


@dataclass(frozen=True)
class BudgetNeeds:
    """What a VM's cold start needs to fit a budget: the starts a round, then (with those rounds) the registration
    addresses; None where nothing within the bounds does."""

    spawn_parallelism: int | None
    addresses: int | None


def budget_needs(p: Pacing, budget_seconds: float) -> BudgetNeeds:
    """The rounds first (its own when they fit, else the smallest that do), then the fewest addresses with them."""
    rounds = p.spawn_parallelism if p.floor_by_rounds() <= budget_seconds else \
        parallelism_for(p, budget_seconds, MAX_SPAWN_PARALLELISM)
    if rounds is None:
        return BudgetNeeds(None, None)
    return BudgetNeeds(rounds, addresses_for(_with(p, addresses=1, spawn_parallelism=rounds), budget_seconds,
                                             MAX_REGISTRATION_ADDRESSES))


def _with(p: Pacing, **changes: float) -> Pacing:
    values = {**p.__dict__, **changes}
    return Pacing(**values)


@dataclass(frozen=True)
class FleetColdStart:
    seconds: float
    slowest_vm_seconds: float
    rendezvous_seconds: float
    peak_per_second: float  # what the paced VMs offer; back_to_back VMs (roundDelaySeconds 0) are not bounded so
    notes: tuple[str, ...]
    back_to_back: int = 0


def fleet_cold_start(vms: list[tuple[Pacing, int]], capacity: RendezvousCapacity) -> FleetColdStart:
    """Every VM (pacing, how many such VMs) starting at once against one rendezvous."""
    slowest = max((vm_cold_start(p) for p, _ in vms), default=0.0)
    total = sum(p.target_agents * count for p, count in vms)
    # at the start every VM offers a full round per delay (its buckets are full); with no delay, rounds come back
    # to back and nothing in the pacing bounds what the VM offers
    back_to_back = [count for p, count in vms if p.round_delay_seconds == 0 and p.target_agents > p.spawn_parallelism]
    peak = sum(count * min(p.spawn_parallelism, p.target_agents) / p.round_delay_seconds
               for p, count in vms if p.round_delay_seconds > 0)
    by_rendezvous = total / capacity.registrations_per_second
    notes = []
    if back_to_back:
        notes.append("roundDelaySeconds 0 starts the rounds back to back: the registrations offered at the start "
                     "are bounded by the registry's buckets alone, not by pacing; one rendezvous sustained "
                     f"{capacity.registrations_per_second:,} a second (bench/RESULTS.md)")
    elif peak > capacity.registrations_per_second * capacity.usable_share:
        notes.append(f"the fleet's rounds offer {peak:,.0f} registrations a second at the start, over "
                     f"{capacity.usable_share:.0%} of the {capacity.registrations_per_second:,} one rendezvous "
                     "sustained (bench/RESULTS.md): lower spawnParallelism or lengthen roundDelaySeconds")
    if total > capacity.measured_identities:
        notes.append(f"{total:,} identities on one rendezvous: measured up to {capacity.measured_identities:,} "
                     "only (bench/rendezvous_capacity.py); past that, split the fleet over more rendezvous stacks "
                     "(SCALING.md)")
    return FleetColdStart(max(slowest, by_rendezvous), slowest, by_rendezvous, peak, tuple(notes), sum(back_to_back))
