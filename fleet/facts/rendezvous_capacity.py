"""What one rendezvous carries, as measured (data/rendezvous_capacity.yaml, from bench/rendezvous_capacity.py): the
planner paces a fleet's cold start by it, and says so when a fleet goes past it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from fleet.facts.tables import table


@dataclass(frozen=True)
class RendezvousCapacity:
    # registrations a second one rendezvous sustained while its registry grew to `measured_identities`
    registrations_per_second: int
    measured_identities: int
    # the share of that rate a fleet's rounds may offer at once: the rest is headroom for heartbeats and lookups
    usable_share: float
    measured_on: str


@cache
def rendezvous_capacity() -> RendezvousCapacity:
    row = table("rendezvous_capacity.yaml")
    return RendezvousCapacity(row.number("registrations_per_second"), row.number("measured_identities"),
                              float(row.number("usable_share", whole=False, at_most=1)), row.text("measured_on"))
