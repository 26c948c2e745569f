"""The live rollover state machine: agents whose process is not what the config starts now are replaced in
batches of at most `rollout_max_unavailable` of the target, each batch back and registered before the next; a
batch that is not back by its deadline fails the rollout, and the revert rolls the same way.

It decides; the supervisor acts (stops the batch it names, logs, changes its config). No processes here, so every
transition is unit-tested on its own (tests/test_rollout.py)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

# What a rollout restarts an agent for; the rest of the config applies to the next starts as it is.
ROLLED_FIELDS = ("daemon", "version", "daemon_flags", "gogc", "registry", "beacon", "base_udp_port",
                 "registry_fingerprint")


def batch_size(target_agents: int, max_unavailable: float) -> int:
    """Agents one batch may take down at once: the share of the target, at least one."""
    return max(1, math.floor(target_agents * max_unavailable))


@dataclasses.dataclass(frozen=True)
class Step:
    """What one look at the rollout asks the supervisor to do."""

    progressed: bool = False  # the batch in flight is back and registered (log rollout-progress)
    late: tuple[int, ...] = ()  # the batch in flight missed its deadline: these are not back (fail the rollout)
    finished: bool = False  # nothing is left to roll (log rollout-done or rollout-reverted)
    batch: tuple[int, ...] = ()  # stop these now: they come back as the config starts them


@dataclasses.dataclass
class Rollout:
    reason: str
    previous: Any  # the config a failed rollout goes back to
    total: int = 0
    done: int = 0
    batch: list[int] = dataclasses.field(default_factory=list)
    batch_deadline: float = 0.0
    reverting: bool = False
    highest_first: bool = False  # the UDP base moved up: the supervisor hands `stale` highest index first

    def step(self, now: float, *, back: Callable[[int], bool], registered: Callable[[int], bool],
             stale: Callable[[], list[int]], size: int, batch_seconds: Callable[[int], float]) -> Step:
        """`back(i)`: agent i runs as the config starts it now and is registered; `registered(i)`: its socket
        exists; `stale()`: the agents still to roll, in order; `batch_seconds(n)`: how long n restarts may take."""
        progressed = False
        if self.batch:
            if all(back(i) for i in self.batch):
                self.done += len(self.batch)
                self.batch = []
                progressed = True
            elif now > self.batch_deadline:
                return Step(late=tuple(i for i in self.batch if not registered(i)))
            else:
                return Step()
        left = stale()
        if not left:
            return Step(progressed, finished=True)
        self.total = max(self.total, self.done + len(left))
        self.batch = left[:size]
        self.batch_deadline = now + batch_seconds(len(self.batch))
        return Step(progressed, batch=tuple(self.batch))

    def revert(self, back_to: Any, highest_first: bool = False) -> Rollout:
        """The rollout that takes the agents back to what ran before, after this one failed (HIGHEST_FIRST: going
        back moves the UDP base up)."""
        return Rollout(f"revert of {self.reason}", back_to, reverting=True, highest_first=highest_first)

    def status(self) -> dict[str, Any]:
        return {"state": "reverting" if self.reverting else "rolling", "reason": self.reason, "done": self.done,
                "of": self.total}

    def outcome(self) -> dict[str, Any]:
        """What the last change came to, once finished (a revert reports the failure that caused it)."""
        return {"state": "done", "reason": self.reason, "done": self.done, "of": self.total}

    def failure(self, why: str) -> dict[str, Any]:
        return {"state": "failed", "reason": f"{self.reason}: {why}", "done": self.done, "of": self.total}
