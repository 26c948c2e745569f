"""The rendezvous `GET /api/stats`: fetched patiently with `requests`, validated, in either known shape."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import requests
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from fleet.verify import bounded

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
        raw = bounded.loads(body)
    except UnicodeDecodeError:
        raise StatsError(f"{url} answered a body that is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise StatsError(f"{url} answered malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # a number past Python's digit limit; nesting past its depth
        raise StatsContractError(f"{url} answered JSON it cannot read: {str(exc)[:120] or type(exc).__name__}") \
            from None
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
        count = FleetCount(stats.active_nodes, stats.total_nodes, SHAPE_RENDEZVOUS)
        names = ("active_nodes", "total_nodes")
    else:
        assert isinstance(stats, LegacyStats)
        count = FleetCount(stats.online_agents, stats.total_agents, SHAPE_LEGACY)
        names = ("online_agents", "total_agents")
    if count.online > count.total:  # a registry cannot have more online than it knows: not a count to believe
        raise StatsContractError(f"{url}: {names[0]} {count.online} is more than {names[1]} {count.total}")
    return count


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
            answer = None
            try:
                answer = self._get(session, time.monotonic() + min(self.request_timeout, remaining))
            except requests.Timeout:
                last = "timed out"
            except requests.ConnectionError as exc:
                last = f"cannot connect ({_reason(exc)})"
            except requests.RequestException as exc:
                raise StatsError(f"{self.url}: {exc}") from None
            if answer is not None and answer[0] >= 500:
                last = f"HTTP {answer[0]}"
            elif answer is not None and answer[0] != 200:  # a wrong URL does not heal by waiting
                raise StatsError(f"{self.url} answered HTTP {answer[0]}")
            elif answer is not None:
                try:
                    return parse_stats(answer[1], self.url)
                except StatsContractError:
                    raise
                except StatsError as exc:
                    last = str(exc).removeprefix(f"{self.url} ")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StatsError(f"{self.url}: gave up at the deadline; last: {last}")
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 8.0)


    def _get(self, session: requests.Session, until: float) -> tuple[int, bytes]:
        """(status, body) of one GET, whole by UNTIL, at most MAX_BODY_BYTES, redirects only on the stats host."""
        try:
            return bounded.fetch(session, self.url, until, headers={"Accept": "application/json"},
                                 redirects=bounded.MAX_REDIRECTS)
        except (bounded.TooLargeError, bounded.RedirectRefusedError) as exc:
            raise StatsError(f"{self.url} {exc}") from None


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "Network is unreachable"):
        if marker in text:
            return marker
    return text.split(": ")[-1][:120]
