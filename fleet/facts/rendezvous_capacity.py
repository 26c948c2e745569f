"""What one rendezvous carries, as measured (data/rendezvous_capacity.yaml, from bench/rendezvous_capacity.py): the
planner paces a fleet's cold start by it, and says so when a fleet goes past it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

TABLE_PATH = Path(__file__).with_name("data") / "rendezvous_capacity.yaml"


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
    raw = yaml.safe_load(TABLE_PATH.read_text())
    return RendezvousCapacity(int(raw["registrations_per_second"]), int(raw["measured_identities"]),
                              float(raw["usable_share"]), str(raw["measured_on"]))
