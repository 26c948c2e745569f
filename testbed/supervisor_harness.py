"""Runs the supervisor (startup/pilot_supervisor/, as the renderer's zipapp) for real against the stand-in daemon, in a
private directory."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.startup_render import build_zipapp, render_contract

REPO = Path(__file__).resolve().parent.parent
STANDIN = Path(__file__).resolve().parent / "standin_daemon.py"
# The program as the VMs run it: the supervisor package as the renderer's zipapp, with the rendered VM contract
# beside it (where the startup script puts it). Written once per test session under .cache (a content-addressed
# directory), run from there.
ZIPAPP, CONTRACT = build_zipapp(), render_contract()
_DIGEST = hashlib.sha256(ZIPAPP + CONTRACT.encode()).hexdigest()[:16]
SUPERVISOR = REPO / ".cache" / "supervisor" / _DIGEST / "pilot-supervisor.pyz"
if not SUPERVISOR.exists():
    SUPERVISOR.parent.mkdir(parents=True, exist_ok=True)
    (SUPERVISOR.parent / "contract.json").write_text(CONTRACT)
    _tmp = SUPERVISOR.with_name(f".{os.getpid()}.tmp")
    _tmp.write_bytes(ZIPAPP)
    _tmp.replace(SUPERVISOR)


def script_with(script: str, zipapp: bytes) -> str:
    """A rendered startup script with its supervisor zipapp replaced: what `pulumi up` of another pilot-fleet release
    puts in the project's metadata."""
    encoded = base64.encodebytes(ZIPAPP).decode()
    if encoded not in script:
        raise ValueError("the script does not carry this session's supervisor zipapp as the renderer writes it")
    return script.replace(encoded, base64.encodebytes(zipapp).decode())


def release_with(name: str, body: bytes, base: bytes = ZIPAPP) -> bytes:
    """The supervisor zipapp with member NAME set to BODY (added or replaced): another release of the program."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as old, zipfile.ZipFile(out, "w") as new:
        for item in old.infolist():
            if item.filename != name:
                new.writestr(item, old.read(item))
        new.writestr(name, body)
    return out.getvalue()


# In-process tests import the package from that same zipapp, with that same contract.
sys.path.insert(0, str(SUPERVISOR))
import pilot_supervisor.agents  # noqa: E402
import pilot_supervisor.attributes  # noqa: E402
import pilot_supervisor.config  # noqa: E402
import pilot_supervisor.contract  # noqa: E402
import pilot_supervisor.health  # noqa: E402
import pilot_supervisor.install  # noqa: E402
import pilot_supervisor.live  # noqa: E402
import pilot_supervisor.pacing  # noqa: E402
import pilot_supervisor.registry_tls  # noqa: E402
import pilot_supervisor.rollout  # noqa: E402
import pilot_supervisor.store  # noqa: E402
import pilot_supervisor.supervisor  # noqa: E402

pilot_supervisor.contract.load(SUPERVISOR.parent / "contract.json")
sv = pilot_supervisor  # the package, its modules imported: sv.config.Config, sv.agents.daemon_argv, ...

# Fast figures for tests: rounds of 3 every 0.3 s, 10 new identities a second after a burst of 4.
FAST = {"tick_seconds": 0.1, "settle_seconds": 0.6, "spawn_parallelism": 3, "round_delay_seconds": 0.3,
        "health_threshold": 0.95, "rollout_max_unavailable": 0.25,
        "new_registrations_per_minute": 600, "new_registration_burst": 4, "backoff_initial_seconds": 0.4,
        "backoff_max_seconds": 3.0, "stop_batch": 4, "stop_batch_delay_seconds": 0.4, "stop_grace_seconds": 3.0}


def free_udp_ports(count: int) -> int:
    """A base port with `count` consecutive free UDP ports on loopback."""
    for base in range(21000 + (os.getpid() % 200) * 50, 60000, count + 7):
        held = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no free UDP port range")


@dataclass
class Event:
    at: float
    kind: str
    index: int
    detail: str


@dataclass
class Supervised:
    base: Path
    config: dict[str, Any]
    proc: subprocess.Popen[str] | None = None
    # a command the supervisor runs under (e.g. a private mount namespace for file-system faults)
    prefix: list[str] = field(default_factory=list)
    # the zipapp it runs, its contract.json beside it: the session's shared one, or a test's own copy (an upgrade
    # test's supervisor installs its new release where it runs from)
    program: Path = SUPERVISOR

    @property
    def state_dir(self) -> Path:
        return Path(self.config["state_dir"])

    def start(self, **changes: Any) -> None:
        self.config.update(changes)
        path = self.base / "supervisor.json"
        path.write_text(json.dumps(self.config))
        self.proc = subprocess.Popen([*self.prefix, sys.executable, str(self.program), "run", "--config", str(path)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)

    def status(self) -> dict[str, Any]:
        path = Path(self.config["run_dir"]) / "status.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def events(self) -> list[Event]:
        log = self.state_dir / "standin" / "events.log"
        out = []
        for line in (log.read_text().splitlines() if log.exists() else []):
            at, kind, index, *rest = line.split()
            out.append(Event(float(at), kind, int(index), " ".join(rest)))
        return out

    def wait_for(self, what: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"supervisor exited {self.proc.returncode}: {self.proc.stdout.read()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; status {self.status()}")
            time.sleep(0.05)

    def terminate(self, timeout: float = 30.0) -> str:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=timeout)
        return out

    def crash(self) -> None:
        """SIGKILL the supervisor alone: its agents live on, as after a supervisor crash."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.communicate(timeout=10)


def max_concurrent(events: list[Event]) -> int:
    """Most agents alive at once, from start/stop events and the process listing the test also samples."""
    alive, most = 0, 0
    for event in sorted(events, key=lambda e: e.at):
        if event.kind == "start":
            alive += 1
        elif event.kind == "stop":
            alive -= 1
        most = max(most, alive)
    return most


@contextmanager
def registry_port(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """A stand-in for the registry's TCP port: accepts connections and closes them (the supervisor only probes it;
    the stand-in daemon does not talk to a registry). Yields HOST:PORT."""
    server = socket.create_server((host, port))
    server.settimeout(0.2)
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            with suppress(OSError):
                conn, _ = server.accept()
                conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"{host}:{server.getsockname()[1]}"
    finally:
        done.set()
        thread.join(timeout=5)
        server.close()


@contextmanager
def supervised(base: Path, target: int, program: Path = SUPERVISOR, **overrides: Any) -> Iterator[Supervised]:
    port = free_udp_ports(target + 8)
    with registry_port() as registry:
        config = {"target_agents": target, "daemon": str(STANDIN), "registry": registry, "beacon": "127.0.0.1:9",
                  "base_udp_port": port, "state_dir": str(base / "state"), "run_dir": str(base / "run"),
                  **FAST, **overrides}
        box = Supervised(base, config, program=program)
        try:
            yield box
        finally:
            _stop(box, base)


def _stop(box: Supervised, base: Path) -> None:
    if box.proc and box.proc.poll() is None:
        with suppress(subprocess.TimeoutExpired):
            box.terminate(timeout=30)
    sockets = f"{box.config['run_dir']}/agents/"
    for pid in os.listdir("/proc"):  # anything left (a crashed supervisor's agents) goes too
        if pid.isdigit():
            with suppress(OSError):
                if sockets.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(int(pid), signal.SIGKILL)
