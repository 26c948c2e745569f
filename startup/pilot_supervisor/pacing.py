"""Pacing against the registry: its per-source-IP bucket for new identities, mirrored here, and whether it answers."""

from __future__ import annotations

import math
import socket

from pilot_supervisor.config import Config


class TokenBucket:
    def __init__(self, per_minute: float, burst: int, now: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(burst, 1))
        self.tokens = self.capacity
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def empty(self, now: float) -> None:
        self.tokens, self.stamp = 0.0, now


def registry_reachable(address: str, timeout: float) -> bool:
    """Whether the registry (HOST:PORT) accepts a TCP connection now."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def rampup_seconds(config: Config) -> float:
    """How long a start-up of `target_agents` fresh identities may take at this pacing, with 50% slack + 10 min."""
    c = config
    by_registry = max(0, c.target_agents - c.new_registration_burst) * 60 / c.new_registrations_per_minute
    by_rounds = math.ceil(c.target_agents / c.spawn_parallelism) * c.round_delay_seconds
    return max(by_registry, by_rounds) * 1.5 + 600
