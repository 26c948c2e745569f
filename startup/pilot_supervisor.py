#!/usr/bin/env python3
"""pilot-fleet agent supervisor: keeps exactly `target` pilot-daemon processes running on this host.

It runs as its own systemd unit (pilot-agents.service), so the agents live in that unit's cgroup with its limits,
never in the startup script's. Standard library only: it runs on the image's python3.

Every tick it
  * reaps exited children (one waitpid per exit) and, every `scan_seconds`, lists the running agents with a single
    /proc scan (one probe per agent would be thousands of calls), so agents it did not start itself (a crashed
    supervisor's) are seen and counted too;
  * stops agents above the target (highest index first) and never starts more than the gap to the target;
  * starts missing agents in paced rounds (`spawn_parallelism` per round, `round_delay_seconds` apart), only while
    the registry accepts TCP connections: a daemon that cannot reach it exits, and its restart backoff would then
    outlast the registry's arrival (one `pulumi up` boots the swarm hosts and their rendezvous at once). Starts
    draw on a bucket mirroring the registry's per-IP limit (`new_registrations_per_minute`, burst
    `new_registration_burst`) as the registry does: every registration takes a token when there is one, but only a
    fresh identity is refused without (a known key re-registers anyway), so only fresh identities wait for tokens;
  * restarts agents that exited (refused registration, crash, watchdog) after an exponential backoff;
  * writes a status file, serves a health endpoint, and publishes target / running / restarts as guest attributes
    no more often than `guest_attribute_interval_seconds` (Compute Engine allows 10 writes a minute per VM).

On SIGTERM it stops the agents in paced batches (mass deregistration floods the registry), then kills what is left
after a grace period.

Each agent `i` has UDP port base + i, socket `<run_dir>/agents/<i>.sock` and a durable directory
`<state_dir>/agents/<i>/` holding its `-identity`, so a reboot re-registers the same identities.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REGISTERED_MARKER = "registered"
# What pilot-daemon 1.18.0 logs as it exits when the registry answered its registration with an error. It does not
# pass the registry's reason on ("registry: request failed"; the rendezvous' own log says "registration rate
# limited" or "standby mode"), so any refused registration counts. Unreachable registries log "registry dial".
REFUSED_REGISTRATION = "daemon start: register:"


@dataclasses.dataclass(frozen=True)
class Config:
    target: int
    daemon: str
    registry: str
    beacon: str
    base_udp_port: int
    state_dir: str
    run_dir: str
    # The fleet's pacing facts come from the config the startup script writes (fleet/pilot.py renders their
    # defaults and bounds into it): no default of their own here.
    spawn_parallelism: int
    round_delay_seconds: float
    new_registrations_per_minute: float
    health_threshold: float
    hostname_prefix: str = ""
    endpoint_ip: str = ""
    gogc: int = 0
    new_registration_burst: int = 10
    tick_seconds: float = 1.0
    # A full /proc scan (finds agents this supervisor did not start, and adopted ones that died) this often; in
    # between, the agents it started are followed through waitpid alone (cheap at thousands of agents).
    scan_seconds: float = 10.0
    settle_seconds: float = 10.0
    backoff_initial_seconds: float = 5.0
    backoff_max_seconds: float = 300.0
    stop_batch: int = 100
    stop_batch_delay_seconds: float = 1.0
    stop_grace_seconds: float = 30.0
    registry_probe_timeout_seconds: float = 2.0
    guest_attributes_url: str = ""
    guest_attribute_interval_seconds: float = 60.0
    health_address: str = ""
    health_port: int = 0
    # A managed instance group's autohealing must not recreate a VM that is still starting its agents at the
    # registry's pace: /healthz is also 200 while the start-up is on schedule (see Supervisor.rampup_seconds).
    healthy_during_rampup: bool = True

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"pilot-supervisor: cannot read config {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise SystemExit(f"pilot-supervisor: config {path} is not a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(fields))
        missing = sorted(n for n, f in fields.items()
                         if f.default is dataclasses.MISSING and n not in raw)
        if unknown or missing:
            raise SystemExit(f"pilot-supervisor: config {path}: unknown keys {unknown}, missing keys {missing}")
        config = cls(**raw)
        if config.target < 0 or config.spawn_parallelism < 1 or config.stop_batch < 1:
            raise SystemExit(f"pilot-supervisor: config {path}: target >= 0, spawn_parallelism >= 1 and "
                             "stop_batch >= 1 are required")
        return config

    @property
    def stop_budget_seconds(self) -> float:
        """Longest a paced stop of `target` agents takes: what the unit's TimeoutStopSec must allow."""
        return math.ceil(self.target / self.stop_batch) * self.stop_batch_delay_seconds + self.stop_grace_seconds


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "time": round(time.time(), 3), **fields}, sort_keys=True), flush=True)


def agent_socket(config: Config, index: int) -> Path:
    return Path(config.run_dir) / "agents" / f"{index}.sock"


def agent_dir(config: Config, index: int) -> Path:
    return Path(config.state_dir) / "agents" / str(index)


def daemon_argv(config: Config, index: int) -> list[str]:
    """The one place that decides how an agent is started (the contract test checks it against the binary)."""
    port = config.base_udp_port + index
    argv = [config.daemon,
            "-registry", config.registry,
            "-beacon", config.beacon,
            "-listen", f":{port}",
            "-socket", str(agent_socket(config, index)),
            "-identity", str(agent_dir(config, index) / "identity.json"),
            "-log-format", "json",
            "-log-level", "warn",
            "-log-max-size", "1",
            "-log-max-backups", "1",
            # the daemon's outbound feeds (telemetry, message of the day, skill manifest from GitHub) are off:
            # thousands of daemons must not each poll external hosts
            "-telemetry-url", "",
            "-motd-feed-url", "",
            "-no-skillinject"]
    if config.endpoint_ip:
        argv += ["-endpoint", f"{config.endpoint_ip}:{port}"]
    if config.hostname_prefix:
        argv += ["-hostname", f"{config.hostname_prefix}-{index}"[:63].rstrip("-")]
    return argv


def daemon_env(config: Config, index: int) -> dict[str, str]:
    """The one place that decides an agent's environment (the contract tests run the binary with it)."""
    home = agent_dir(config, index)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home),
           # pilot-daemon 1.18.0 fetches an app-store catalogue from raw.githubusercontent.com at start; a local
           # file that does not exist keeps that off the network (catalogue apps fail closed, which a fleet wants)
           "PILOT_APPSTORE_CATALOG_URL": f"file://{home}/app-catalogue-disabled.json"}
    if config.gogc:
        env["GOGC"] = str(config.gogc)
    return env


def list_agents(config: Config) -> dict[int, list[int]]:
    """One scan of /proc: agent index -> pids of processes started with `-socket <run_dir>/agents/<index>.sock`.

    The socket path, private to this host's run directory, identifies an agent whatever started it."""
    sockets = Path(config.run_dir) / "agents"
    prefix = f"{sockets}/"
    found: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                raw = handle.read()
        except OSError:
            continue
        if b"-socket\0" not in raw:
            continue
        args = raw.decode(errors="replace").split("\0")
        try:
            sock = args[args.index("-socket") + 1]
        except (ValueError, IndexError):
            continue
        name = sock.removeprefix(prefix).removesuffix(".sock")
        if sock.startswith(prefix) and name.isdigit():
            found.setdefault(int(name), []).append(int(entry.name))
    return found


def registry_reachable(address: str, timeout: float) -> bool:
    """Whether the registry (HOST:PORT) accepts a TCP connection now."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


class TokenBucket:
    def __init__(self, per_minute: float, burst: int, now: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(burst, 1))
        self.tokens = self.capacity
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclasses.dataclass
class AgentState:
    started_at: float = 0.0
    failures: int = 0
    not_before: float = 0.0
    log_offset: int = 0  # where this start's output begins in daemon.log


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        now = time.monotonic()
        self.bucket = TokenBucket(config.new_registrations_per_minute, config.new_registration_burst, now)
        self.agents: dict[int, AgentState] = {}
        self.children: dict[int, tuple[int, subprocess.Popen[bytes]]] = {}
        self.running: dict[int, list[int]] = {}
        # What the health thread reads: an immutable copy of `running`, replaced whole after each tick. The main
        # thread mutates `running` while it spawns; iterating it from another thread could see it change size.
        self.view: dict[int, tuple[int, ...]] = {}
        self.restarts = 0
        self.next_round = 0.0
        self.stopping = threading.Event()
        self.published: dict[str, str] = {}
        self.next_publish = 0.0
        self.started = now
        self.registry_up: bool | None = None
        self.ticks = 0
        self.last_tick_seconds = 0.0
        self.next_scan = 0.0
        # the registry refused registrations: no fresh identity starts before `fresh_not_before`
        self.refusal_streak = 0
        self.fresh_not_before = 0.0
        # identities the registry knows, from the markers earlier runs left (read once; kept in step after)
        self.known = {int(m.parent.name) for m in (Path(config.state_dir) / "agents").glob(f"*/{REGISTERED_MARKER}")
                      if m.parent.name.isdigit()}

    # -- one tick -------------------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.monotonic()
        self.reap(now)
        if now >= self.next_scan:
            self.running = self.listing()
            self.next_scan = now + self.config.scan_seconds
        self.trim()
        self.mark_registered()
        if not self.stopping.is_set():
            self.start_round(now)
        self.publish_view()
        self.report(now)

    def publish_view(self) -> None:
        self.view = {index: tuple(pids) for index, pids in self.running.items()}

    def listing(self) -> dict[int, list[int]]:
        """One /proc scan, plus every child not yet reaped (mid-exec, or a zombie): it counts until reaped."""
        running = list_agents(self.config)
        for pid, (index, _) in self.children.items():
            if pid not in running.get(index, []):
                running.setdefault(index, []).append(pid)
        return running

    def exited_children(self) -> Iterator[tuple[int, int]]:
        """(pid, exit status) of every child that exited since the last call: one waitpid per exit, not per agent."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            yield pid, os.waitstatus_to_exitcode(status)

    def reap(self, now: float) -> None:
        for pid, code in self.exited_children():
            if pid not in self.children:
                continue
            index, proc = self.children.pop(pid)
            proc.returncode = code  # reaped here: the Popen must not wait for it again
            pids = self.running.get(index, [])
            if pid in pids:
                pids.remove(pid)
                if not pids:
                    del self.running[index]
            state = self.agents.setdefault(index, AgentState())
            lived = now - state.started_at
            state.failures = 0 if lived >= self.config.settle_seconds else state.failures + 1
            delay = 0.0 if state.failures == 0 else min(
                self.config.backoff_max_seconds,
                self.config.backoff_initial_seconds * 2 ** (state.failures - 1))
            state.not_before = now + delay
            if self.stopping.is_set():
                continue
            self.restarts += 1
            refused = code != 0 and self.refused(index)
            log("agent-exited", index=index, pid=pid, code=code, lived_seconds=round(lived, 1),
                restart_in_seconds=round(delay, 1), **({"registry_refused": refused} if refused else {}))
            if refused:
                self.on_refusal(index, now)

    def refused(self, index: int) -> str:
        """The line in which this agent's last start said the registry refused it; "" if it did not."""
        state = self.agents.get(index, AgentState())
        try:
            with open(agent_dir(self.config, index) / "daemon.log", "rb") as handle:
                end = handle.seek(0, os.SEEK_END)
                handle.seek(max(state.log_offset, end - 4096))
                text = handle.read().decode(errors="replace")
        except OSError:
            return ""
        line = next((line for line in text.splitlines() if REFUSED_REGISTRATION in line), "")
        return line[line.index(REFUSED_REGISTRATION):][:160].rstrip('"}') if line else ""

    def on_refusal(self, index: int, now: float) -> None:
        """The registry said no: our bucket was ahead of its own, or it forgot this identity (a lost store), or it
        is a standby. Empty the bucket, hold fresh starts back as a host (doubling while refusals go on), and pace a
        refused "known" identity as a fresh one from now on."""
        self.bucket.tokens, self.bucket.stamp = 0.0, now
        self.refusal_streak += 1
        hold = min(self.config.backoff_max_seconds,
                   60.0 / self.config.new_registrations_per_minute * 2 ** (self.refusal_streak - 1))
        self.fresh_not_before = max(self.fresh_not_before, now + hold)
        if index in self.known:
            self.known.discard(index)
            (agent_dir(self.config, index) / REGISTERED_MARKER).unlink(missing_ok=True)

    def trim(self) -> None:
        """Above target (target lowered, or agents left by someone else): stop the highest indices."""
        surplus: list[int] = []
        for index, pids in self.running.items():
            surplus += pids[1:]  # two daemons on one socket: keep one
            if index >= self.config.target:
                surplus.append(pids[0])
        for pid in surplus[: self.config.stop_batch]:
            log("agent-surplus", pid=pid)
            _signal(pid, signal.SIGTERM)

    def mark_registered(self) -> None:
        """A running agent whose IPC socket exists is registered: pilot-daemon opens its socket only after the
        registry accepted it. Never guessed from the agent's age: a daemon retries a missing registry for longer
        than any timer, and an identity wrongly taken as known would be started without a token."""
        for index in self.running:
            if index not in self.known and agent_socket(self.config, index).exists():
                (agent_dir(self.config, index) / REGISTERED_MARKER).touch()
                self.known.add(index)
                self.refusal_streak = 0

    def start_round(self, now: float) -> None:
        if now < self.next_round:
            return
        unreaped = {index for index, _ in self.children.values()}  # exited since reap(): backoff comes first
        missing = [i for i in range(self.config.target)
                   if i not in self.running and i not in unreaped
                   and now >= self.agents.get(i, AgentState()).not_before]
        if missing and not self.probe_registry():
            self.next_round = now + max(self.config.round_delay_seconds, 1.0)
            return
        # known identities first: the registry does not rate-limit re-registration
        missing.sort(key=lambda i: (i not in self.known, i))
        started = 0
        for index in missing:
            if started >= self.config.spawn_parallelism:
                break
            fresh = index not in self.known
            if fresh and now < self.fresh_not_before:
                break  # held back after refusals; the remaining ones are fresh too (sorted)
            # The registry takes a token for every registration it can (known keys too) and refuses only fresh
            # ones without: a known identity spends a token when there is one, a fresh one waits for it.
            if not self.bucket.take(now) and fresh:
                break
            self.spawn(index, now, fresh)
            started += 1
        if started:
            # the next round is due one delay after this one began; the loop wakes for it, so rounds no longer wait
            # for the next whole tick (which made them drift by up to a tick each)
            self.next_round = now + self.config.round_delay_seconds

    def probe_registry(self) -> bool:
        """No agent starts while the registry is unreachable: no token is spent, no backoff piles up."""
        up = registry_reachable(self.config.registry, self.config.registry_probe_timeout_seconds)
        if up != self.registry_up:
            log("registry-reachable" if up else "registry-unreachable", registry=self.config.registry)
            self.registry_up = up
        return up

    def spawn(self, index: int, now: float, fresh: bool) -> None:
        home = agent_dir(self.config, index)
        home.mkdir(parents=True, exist_ok=True)
        agent_socket(self.config, index).parent.mkdir(parents=True, exist_ok=True)
        agent_socket(self.config, index).unlink(missing_ok=True)
        with open(home / "daemon.log", "ab") as out:
            offset = out.tell()
            proc = subprocess.Popen(daemon_argv(self.config, index), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=daemon_env(self.config, index), cwd=home,
                                    close_fds=True)
        self.children[proc.pid] = (index, proc)
        state = self.agents.setdefault(index, AgentState())
        state.started_at, state.log_offset = now, offset
        self.running.setdefault(index, []).append(proc.pid)
        log("agent-started", index=index, pid=proc.pid, fresh_identity=fresh)

    # -- reporting ------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        running = sum(1 for i in self.view if i < self.config.target)
        return {"target": self.config.target, "running": running, "restarts": self.restarts,
                "stopping": self.stopping.is_set(), "updated": time.time(), "ticks": self.ticks,
                "tick_seconds": round(self.last_tick_seconds, 6)}

    @property
    def rampup_seconds(self) -> float:
        """How long a start-up of `target` fresh identities may take at this pacing, with 50% slack + 10 minutes."""
        c = self.config
        by_registry = max(0, c.target - c.new_registration_burst) * 60 / c.new_registrations_per_minute
        by_rounds = math.ceil(c.target / c.spawn_parallelism) * c.round_delay_seconds
        return max(by_registry, by_rounds) * 1.5 + 600

    def healthy(self) -> bool:
        status = self.status()
        if status["running"] >= math.ceil(status["target"] * self.config.health_threshold):
            return True
        ramping = time.monotonic() - self.started < self.rampup_seconds
        return self.config.healthy_during_rampup and ramping and not self.stopping.is_set()

    def report(self, now: float, force: bool = False) -> None:
        status = self.status()
        path = Path(self.config.run_dir) / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, sort_keys=True) + "\n")
        tmp.replace(path)
        if not self.config.guest_attributes_url or (now < self.next_publish and not force):
            return
        self.next_publish = now + self.config.guest_attribute_interval_seconds
        for key in ("target", "running", "restarts"):
            value = str(status[key])
            if self.published.get(key) != value and put_guest_attribute(self.config, f"agents-{key}", value):
                self.published[key] = value

    # -- stop -----------------------------------------------------------------------------------------------
    def stop_all(self) -> None:
        self.stopping.set()
        now = time.monotonic()
        self.reap(now)
        pids = [pid for _, pids in sorted(self.listing().items(), reverse=True) for pid in pids]
        log("stopping", agents=len(pids), batch=self.config.stop_batch)
        for offset in range(0, len(pids), self.config.stop_batch):
            for pid in pids[offset:offset + self.config.stop_batch]:
                _signal(pid, signal.SIGTERM)
            time.sleep(self.config.stop_batch_delay_seconds)
            self.reap(time.monotonic())
        deadline = time.monotonic() + self.config.stop_grace_seconds
        while time.monotonic() < deadline:
            self.reap(time.monotonic())
            if not self.listing():
                break
            time.sleep(0.2)
        left = [pid for pids in self.listing().values() for pid in pids]
        for pid in left:
            _signal(pid, signal.SIGKILL)
        for _, proc in list(self.children.values()):
            proc.wait()
        self.children.clear()
        self.running = {}
        self.publish_view()
        log("stopped", killed_after_grace=len(left))
        self.report(time.monotonic(), force=True)


def _signal(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)


def put_guest_attribute(config: Config, key: str, value: str) -> bool:
    request = urllib.request.Request(f"{config.guest_attributes_url.rstrip('/')}/{key}", data=value.encode(),
                                     method="PUT", headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=3):
            return True
    except OSError as exc:
        log("guest-attribute-failed", key=key, error=str(exc))
        return False


def metrics(supervisor: Supervisor) -> str:
    """Prometheus text: the supervisor's counts, the agents' total RSS, the host's memory (read per scrape)."""
    status = supervisor.status()
    page = os.sysconf("SC_PAGE_SIZE")
    rss = 0
    for pids in supervisor.view.values():
        for pid in pids:
            try:
                with open(f"/proc/{pid}/statm") as handle:
                    rss += int(handle.read().split()[1]) * page
            except (OSError, ValueError, IndexError):
                continue
    meminfo: dict[str, int] = {}
    with suppress(OSError), open("/proc/meminfo") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            meminfo[name] = int(rest.split()[0]) * 1024
    samples = [
        ("pilot_agents_target", "gauge", "agents this host should run", status["target"]),
        ("pilot_agents_running", "gauge", "agents running on this host", status["running"]),
        ("pilot_agents_restarts_total", "counter", "agent exits the supervisor restarted", status["restarts"]),
        ("pilot_agents_rss_bytes", "gauge", "resident memory of all agents on this host", rss),
        ("pilot_host_memory_available_bytes", "gauge", "MemAvailable", meminfo.get("MemAvailable", 0)),
        ("pilot_host_memory_total_bytes", "gauge", "MemTotal", meminfo.get("MemTotal", 0)),
        ("pilot_supervisor_ticks_total", "counter", "supervisor ticks", supervisor.ticks),
        ("pilot_supervisor_tick_seconds", "gauge", "how long the last tick took",
         round(supervisor.last_tick_seconds, 6)),
    ]
    return "".join(f"# HELP {name} {text}\n# TYPE {name} {kind}\n{name} {value}\n"
                   for name, kind, text, value in samples)


def serve_health(supervisor: Supervisor) -> ThreadingHTTPServer | None:
    config = supervisor.config
    if not config.health_port:
        return None

    class Health(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                self.reply(200, metrics(supervisor).encode(), "text/plain; version=0.0.4")
                return
            if self.path.split("?")[0] not in ("/healthz", "/status"):
                self.send_error(404)
                return
            ok = self.path.startswith("/status") or supervisor.healthy()
            self.reply(200 if ok else 503, (json.dumps(supervisor.status(), sort_keys=True) + "\n").encode(),
                       "application/json")

        def reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((config.health_address, config.health_port), Health)
    threading.Thread(target=server.serve_forever, daemon=True, name="health").start()
    return server


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / "supervisor.lock", "w")  # noqa: SIM115 - held for the process lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"pilot-supervisor: another supervisor holds {run_dir / 'supervisor.lock'}") from None
    try:
        yield
    finally:
        handle.close()


def run(config: Config) -> int:
    with locked(Path(config.run_dir)):
        supervisor = Supervisor(config)
        signal.signal(signal.SIGTERM, lambda *_: supervisor.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: supervisor.stopping.set())
        health = serve_health(supervisor)
        log("supervising", target=config.target, daemon=config.daemon, base_udp_port=config.base_udp_port)
        while not supervisor.stopping.is_set():
            began = time.monotonic()
            supervisor.tick()
            now = time.monotonic()
            supervisor.ticks += 1
            supervisor.last_tick_seconds = now - began
            # wake for the next tick, or for the next spawn round if it is due sooner
            wake = now + config.tick_seconds
            if now < supervisor.next_round < wake:
                wake = supervisor.next_round
            supervisor.stopping.wait(wake - now)
        supervisor.stop_all()
        if health:
            health.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pilot-supervisor", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "supervise the agents until SIGTERM"),
                       ("argv", "print the command line of agent INDEX (for operators and the contract test)"),
                       ("stop-budget", "print the seconds a paced stop may take")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--config", type=Path, required=True)
        if name == "argv":
            cmd.add_argument("index", type=int)
    args = parser.parse_args(argv)
    config = Config.load(args.config)
    if args.command == "argv":
        print(json.dumps(daemon_argv(config, args.index)))
        return 0
    if args.command == "stop-budget":
        print(math.ceil(config.stop_budget_seconds))
        return 0
    return run(config)


if __name__ == "__main__":
    sys.exit(main())
