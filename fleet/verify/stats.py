"""The rendezvous `GET /api/stats`: fetched patiently with `requests`, validated, in either known shape."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import requests
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

# The real rendezvous (cmd/rendezvous); the shape the seed's operations blog shows (older or proxied).
SHAPE_RENDEZVOUS = "rendezvous"
SHAPE_LEGACY = "legacy"


class StatsError(Exception):
    """The stats could not be read or make no sense; the message says which and why."""


class StatsContractError(StatsError):
    """The answer has the stats' shape but a field of the wrong type or range: other software (or another version)
    answers at that URL, which waiting does not change, so it is not retried."""


class _Stats(BaseModel):
    model_config = ConfigDict(extra="ignore")


# Counts are whole JSON numbers: `true`, `"12"` or `12.0` are malformed answers, never 1, 12 agents.
class RendezvousStats(_Stats):
    total_nodes: StrictInt = Field(ge=0)
    active_nodes: StrictInt = Field(ge=0)


class LegacyStats(_Stats):
    total_agents: StrictInt = Field(ge=0)
    online_agents: StrictInt = Field(ge=0)


@dataclass(frozen=True)
class FleetCount:
    online: int
    total: int
    shape: str


def parse_stats(body: bytes, url: str) -> FleetCount:
    if not body.strip():
        raise StatsError(f"{url} answered an empty body")
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise StatsError(f"{url} answered malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise StatsError(f"{url} answered JSON that is not an object")
    if "active_nodes" in raw or "total_nodes" in raw:
        model: type[_Stats] = RendezvousStats
    elif "online_agents" in raw or "total_agents" in raw:
        model = LegacyStats
    else:
        raise StatsError(f"{url} answered JSON with neither active_nodes/total_nodes (rendezvous) nor "
                         "online_agents/total_agents (legacy)")
    try:
        stats = model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise StatsContractError(f"{url}: field {'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    if isinstance(stats, RendezvousStats):
        return FleetCount(stats.active_nodes, stats.total_nodes, SHAPE_RENDEZVOUS)
    assert isinstance(stats, LegacyStats)
    return FleetCount(stats.online_agents, stats.total_agents, SHAPE_LEGACY)


@dataclass
class Poller:
    """GETs the stats until an answer parses or the deadline passes: per-request timeouts never outlast it,
    retries back off (0.5 s doubling to 8 s) on connection errors, 5xx and unparsable answers (a server starting up
    or a proxy in front of it); a 4xx or a field of the wrong type fails at once."""

    url: str
    request_timeout: float = 10.0
    session: requests.Session | None = None

    def fetch(self, deadline: float) -> FleetCount:
        session = self.session or requests.Session()
        delay, last = 0.5, "no attempt made"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StatsError(f"{self.url}: gave up at the deadline; last: {last}")
            response = None
            try:
                response = session.get(self.url, timeout=(min(3.0, remaining), min(self.request_timeout, remaining)),
                                       headers={"Accept": "application/json"})
            except requests.Timeout:
                last = "timed out"
            except requests.ConnectionError as exc:
                last = f"cannot connect ({_reason(exc)})"
            except requests.RequestException as exc:
                raise StatsError(f"{self.url}: {exc}") from None
            if response is not None and response.status_code >= 500:
                last = f"HTTP {response.status_code}"
            elif response is not None and response.status_code != 200:  # a wrong URL does not heal by waiting
                raise StatsError(f"{self.url} answered HTTP {response.status_code}")
            elif response is not None:
                try:
                    return parse_stats(response.content, self.url)
                except StatsContractError:
                    raise
                except StatsError as exc:
                    last = str(exc).removeprefix(f"{self.url} ")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StatsError(f"{self.url}: gave up at the deadline; last: {last}")
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 8.0)


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "Network is unreachable"):
        if marker in text:
            return marker
    return text.split(": ")[-1][:120]
