"""What the watcher threads hand the supervisor's main loop (live.py, upgrade.py): messages on its inbox, a queue the
main loop alone drains (live.take_changes), so no watcher writes the state the main loop owns."""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pilot_supervisor.config import Config

if TYPE_CHECKING:
    from pilot_supervisor.supervisor import Supervisor


@dataclass(frozen=True)
class Converge:
    """A config the metadata asks for: the main loop converges to it."""

    config: Config


@dataclass(frozen=True)
class Report:
    """How a change the watcher refused is shown (the status' rollout field); None: a refusal shown is history."""

    change: dict[str, Any] | None


@dataclass(frozen=True)
class Release:
    """The supervisor release the script watcher staged or refused (upgrade.py); {}: none."""

    upgrade: dict[str, str]


@dataclass(frozen=True)
class Preempted:
    """Compute Engine preempts this Spot VM: its `preempted` value turned TRUE (about 30 s before the power-off)."""


Change = Converge | Report | Release | Preempted


def hand_over(sup: Supervisor, change: Change) -> None:
    """From a watcher to the main loop: queued, and the loop woken."""
    sup.inbox.put(change)
    nudge(sup)


def nudge(sup: Supervisor) -> None:
    """Wake the main loop now (a pending change, a child's exit) instead of at its next tick."""
    if sup.wakeup_fd is not None:
        with suppress(BlockingIOError, OSError):
            os.write(sup.wakeup_fd, b"!")
