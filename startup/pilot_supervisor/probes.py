"""Short-lived probe processes the supervisor runs beside its agents, from its watcher threads: a new daemon
version's `-version` and `-h` (install.py), a new release's config check (upgrade.py).

The main loop reaps its children with waitpid(-1) (supervisor.py: one call per exit, however many agents). Had it
reaped a probe, the thread waiting for that probe would find no status, and Python's subprocess then reports exit
0: a failed check would pass. So a probe is registered from before it is forked until its owner has reaped it, and
the reaper leaves registered processes to their owners."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence

_lock = threading.Lock()
_running: set[int] = set()


def run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """ARGV's output and exit status, as subprocess.run(capture_output=True, text=True) gives them; TimeoutExpired
    after TIMEOUT seconds (the probe is killed), OSError if it cannot be started."""
    with _lock:  # forked under the lock: a probe the reaper can see is one it can tell is a probe
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _running.add(proc.pid)
    try:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    finally:
        with _lock:
            _running.discard(proc.pid)
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def is_probe(pid: int) -> bool:
    with _lock:
        return pid in _running
