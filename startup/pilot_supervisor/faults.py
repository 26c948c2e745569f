"""Faults the supervisor lives with instead of exiting: a full or read-only disk, a metadata server that fails or
answers badly, a tick that raised, a health port another process holds. Each is logged when it starts or changes
and when it clears; the status, /healthz body and /metrics list the ones in force. The agents keep being supervised
throughout: an exit would leave them orphaned, and systemd's restart would meet the same disk or port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pilot_supervisor.journal import log


class Faults:
    """Shared by the main loop, the watcher threads and the health endpoint (each reports its own faults, the health
    endpoint lists them): its lock is the one owner of `current`."""

    def __init__(self) -> None:
        self.current: dict[str, str] = {}
        self.lock = threading.Lock()

    def record(self, name: str, exc: BaseException | str) -> None:
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        with self.lock:
            changed, self.current[name] = self.current.get(name) != text, text
        if changed:
            log("fault", fault=name, error=text)

    def clear(self, name: str) -> None:
        with self.lock:
            was = self.current.pop(name, None)
        if was is not None:
            log("fault-cleared", fault=name)

    @contextmanager
    def guard(self, name: str) -> Iterator[None]:
        """Run the block; a file-system error is this fault (and the block is retried by whoever runs it again),
        success clears it."""
        try:
            yield
        except OSError as exc:
            self.record(name, exc)
        else:
            self.clear(name)

    def listing(self) -> list[str]:
        with self.lock:
            return [f"{name}: {text}" for name, text in sorted(self.current.items())]
