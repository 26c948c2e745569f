"""Pacing against the registry: its per-source-IP bucket for new identities, mirrored here, and whether it answers."""

from __future__ import annotations

import hashlib
import math
import socket
import ssl

from pilot_supervisor.config import Config
from pilot_supervisor.contract import key


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


class PinMismatchError(Exception):
    """The registry answers, but not with the certificate this VM's agents pin: they would not register."""


def registry_certificate(address: str, timeout: float) -> str:
    """The hex SHA-256 of the certificate the registry (HOST:PORT) presents in a TLS handshake, as pilot-daemon's
    pinned dial computes it (the DER bytes; no chain, name or date is checked: the pin is the trust). Raises OSError
    when it does not answer, PinMismatchError when it answers without TLS."""
    host, _, port = address.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the pin below is the check, as the daemon's
    try:
        raw = socket.create_connection((host, int(port)), timeout=timeout)
    except ValueError as exc:
        raise OSError(str(exc)) from None
    with raw:
        try:  # it accepted the connection: what it does with a handshake is the registry's answer
            with context.wrap_socket(raw, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise PinMismatchError(f"the registry {address} does not answer TLS ({reason})") from None
    if not der:
        raise PinMismatchError(f"the registry {address} presents no certificate")
    return hashlib.sha256(der).hexdigest()


def registry_pinned(address: str, timeout: float, pin: str) -> bool:
    """Whether the registry answers now and, with PIN, presents that certificate (PinMismatchError says what it presents
    instead)."""
    if not pin:
        return registry_reachable(address, timeout)
    try:
        found = registry_certificate(address, timeout)
    except OSError:
        return False
    if found != pin:
        raise PinMismatchError(f"the registry {address} presents certificate {found}, the agents pin {pin} "
                               f"({key('REGISTRY_FINGERPRINT')}): a rotation not yet served, or not this fleet's "
                               "registry")
    return True


def rampup_seconds(config: Config) -> float:
    """How long a start-up of `target_agents` fresh identities may take at this pacing, with 50% slack + 10 min:
    the busiest registration address's identities past its bucket, or the rounds, whichever is longer."""
    c = config
    busiest = math.ceil(c.target_agents / c.address_count)
    by_registry = max(0, busiest - c.bucket_capacity) * 60 / c.new_registrations_per_minute
    by_rounds = math.ceil(c.target_agents / c.spawn_parallelism) * c.round_delay_seconds
    return max(by_registry, by_rounds) * 1.5 + 600
