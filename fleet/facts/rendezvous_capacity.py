"""What one rendezvous carries, as measured (data/rendezvous_capacity.yaml, from bench/rendezvous_capacity.py): the
planner paces a fleet's cold start by it, and says so when a fleet goes past it."""

from __future__ import annotations

from dataclasses import dataclass, replace
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
    # the same over TLS (registry.tls): every registration a new connection with a full handshake
    tls_registrations_per_second: int = 0
    tls: bool = False  # which of the two `registrations_per_second` is (transport())

    def transport(self, tls: bool) -> RendezvousCapacity:
        """The capacity of a registry that runs plaintext or TLS: its measured rate is that transport's."""
        if tls == self.tls:
            return self
        rate = self.tls_registrations_per_second if tls else self.registrations_per_second
        return replace(self, registrations_per_second=rate, tls=tls)

    @property
    def transport_name(self) -> str:
        return "TLS" if self.tls else "plaintext"


@cache
def rendezvous_capacity() -> RendezvousCapacity:
    row = table("rendezvous_capacity.yaml")
    return RendezvousCapacity(row.number("registrations_per_second"), row.number("measured_identities"),
                              float(row.number("usable_share", whole=False, at_most=1)), row.text("measured_on"),
                              row.number("tls_registrations_per_second"))
