"""Faults the supervisor lives with instead of exiting: a full or read-only disk, a metadata server that fails or
answers badly, a tick that raised, a health port another process holds. Each is logged when it starts or changes
and when it clears; the status, /healthz body and /metrics list the ones in force. The agents keep being supervised
throughout: an exit would leave them orphaned, and systemd's restart would meet the same disk or port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pilot_supervisor.journal import log


class Faults:
    def __init__(self) -> None:
        self.current: dict[str, str] = {}

    def record(self, name: str, exc: BaseException | str) -> None:
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        if self.current.get(name) != text:
            log("fault", fault=name, error=text)
        self.current[name] = text

    def clear(self, name: str) -> None:
        if self.current.pop(name, None) is not None:
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
        return [f"{name}: {text}" for name, text in sorted(self.current.items())]
