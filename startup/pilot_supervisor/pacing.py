"""Pacing against the registry: its per-source-IP bucket for new identities, mirrored here, and whether it answers."""

from __future__ import annotations

import math
import socket

from pilot_supervisor.config import Config


class TokenBucket:
    """The registry's bucket for one source IP, as NewRateLimiter keeps it: `capacity` tokens (its rate a minute),
    one more every 60/rate s.

    Both buckets refill from the first registration out of a full bucket, but the registry sees it a daemon's start
    later than the supervisor starts it. A later agent that comes up faster than that first one would find the
    registry's token not there yet, and be refused: so this bucket starts refilling `lag` seconds after a take
    from full (the config's registration_lag_seconds, which the boot path takes from the VM contract), as the
    registry's does when that first daemon takes as long to register. The planner models the same
    (fleet/capacity/cold_start.py)."""

    def __init__(self, per_minute: float, capacity: int, now: float, lag: float = 0.0) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(capacity, 1))
        self.tokens = self.capacity
        self.stamp = now
        self.lag = lag

    def refit(self, per_minute: float, capacity: int) -> None:
        self.rate, self.capacity = per_minute / 60.0, float(max(capacity, 1))
        self.tokens = min(self.tokens, self.capacity)

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
        full = self.tokens >= self.capacity
        self.stamp = max(self.stamp, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            if full:  # the registry's refill starts when it sees this registration
                self.stamp = now + self.lag
            return True
        return False

    def empty(self, now: float) -> None:
        self.tokens, self.stamp = 0.0, now

    def seconds_to_token(self, now: float) -> float:
        """How long from NOW until a take would succeed (0: now). The planner's cold-start model asks it."""
        tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
        return 0.0 if tokens >= 1.0 else max(0.0, self.stamp - now) + (1.0 - tokens) / self.rate


def registry_reachable(address: str, timeout: float) -> bool:
    """Whether the registry (HOST:PORT) accepts a TCP connection now."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def rampup_seconds(config: Config) -> float:
    """How long a start-up of `target_agents` fresh identities may take at this pacing, with 50% slack + 10 min:
    the busiest registration address's identities past its bucket, or the rounds, whichever is longer."""
    c = config
    busiest = math.ceil(c.target_agents / c.address_count)
    by_registry = max(0, busiest - c.bucket_capacity) * 60 / c.new_registrations_per_minute
    by_rounds = math.ceil(c.target_agents / c.spawn_parallelism) * c.round_delay_seconds
    return max(by_registry, by_rounds) * 1.5 + 600
