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

Day two: it long-polls its instance attributes on the metadata server (wait_for_change with the last ETag), checks
them with the rules the boot path uses (`settings`, the same function), and converges without restarting its unit:
a new target starts or stops agents at the paced speed; a new daemon version is downloaded, sha256-checked and
contract-checked (`-version`, `-h`), then agents roll over in batches of at most `rollout_max_unavailable` of the
target, each batch back and registered before the next (same identities, so no rate limit); anything else that
changes an agent's command line or environment (registry, GOGC, ...) rolls the same way; pacing applies to the next
starts. A version that fails its contract, or whose agents exit or do not register, is rolled back. What it
converges to is written back to its config file, so a restarted supervisor continues where it was.

On SIGTERM it stops the agents in paced batches (mass deregistration floods the registry), then kills what is left
after a grace period.

Each agent `i` has UDP port base + i, socket `<run_dir>/agents/<i>.sock` and a durable directory
`<state_dir>/agents/<i>/` holding its `-identity`, so a reboot re-registers the same identities.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import platform
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REGISTERED_MARKER = "registered"
# What pilot-daemon 1.18.0 logs as it exits when the registry answered its registration with an error. It does not
# pass the registry's reason on ("registry: request failed"; the rendezvous' own log says "registration rate
# limited" or "standby mode"), so any refused registration counts. Unreachable registries log "registry dial".
REFUSED_REGISTRATION = "daemon start: register:"

# The fleet's facts about swarm attributes: their keys, the bounds and defaults of the numeric ones (with the reason
# for each). fleet/components/startup_script.py renders them in from fleet/facts/pilot.py, the one table config
# validation uses too;
# the boot path (`settings`) and the live watcher check attributes with them alike.
ATTRIBUTE_RULES: dict[str, Any] = {}  # @attribute-rules
# Config fields that follow an attribute of the same meaning (bounds key in ATTRIBUTE_RULES["bounds"]).
NUMERIC_FIELDS = {"target": "target_agents", "base_udp_port": "base_udp_port",
                  "spawn_parallelism": "spawn_parallelism", "round_delay_seconds": "round_delay_seconds",
                  "new_registrations_per_minute": "new_registrations_per_minute", "gogc": "gogc",
                  "health_port": "health_port", "health_threshold": "health_threshold",
                  "rollout_max_unavailable": "rollout_max_unavailable"}
HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")
VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
FLAG = re.compile(r"^-[a-z][a-z0-9-]*$")


class AttributesError(ValueError):
    """A swarm VM's attributes this supervisor will not run with; the message names the attribute."""


def key(name: str) -> str:
    keys = ATTRIBUTE_RULES.get("keys")
    if not keys:
        raise AttributesError("this supervisor was not rendered with the fleet's attribute rules "
                                "(fleet/components/startup_script.py renders it)")
    return str(keys[name])


def _number(attributes: dict[str, str], rule: str) -> float:
    attribute, low, high, default, why, whole, low_open = ATTRIBUTE_RULES["bounds"][rule]
    raw = attributes.get(attribute)
    if raw is None:
        if default is None:
            raise AttributesError(f"instance attribute {attribute} is missing")
        return float(default)
    if not re.fullmatch(r"[0-9]+" if whole else r"[0-9]+(\.[0-9]+)?", raw):
        raise AttributesError(f"instance attribute {attribute}='{raw}' is not "
                                f"{'a whole number' if whole else 'a number'}")
    value = float(raw)
    if value > high or value < low or (low_open and value == low):
        span = f"{'above ' if low_open else ''}{low:g}..{high:g}"
        raise AttributesError(f"instance attribute {attribute}={raw} is outside {span} ({why})")
    return value


def settings(attributes: dict[str, str], arch: str = platform.machine()) -> dict[str, Any]:
    """The Config fields a swarm VM's `pilot-*` attributes ask for, checked: the boot path and the live watcher use
    this one function. Values are read as the startup script reads them (surrounding whitespace dropped)."""
    attributes = {k: v.strip() for k, v in attributes.items()}
    role = attributes.get(key("ROLE"))
    if role != "swarm":
        raise AttributesError(f"instance attribute {key('ROLE')}='{role}' is not swarm")
    out: dict[str, Any] = {}
    for field, rule in NUMERIC_FIELDS.items():
        value = _number(attributes, rule)
        out[field] = int(value) if ATTRIBUTE_RULES["bounds"][rule][5] else value
    last = out["base_udp_port"] + out["target"] - 1
    if last > 65535:
        raise AttributesError(f"agent ports {out['base_udp_port']}-{last} run past 65535 "
                                f"({key('BASE_UDP_PORT')} + {key('AGENT_TARGET')})")
    for field, name in (("registry", key("REGISTRY")), ("beacon", key("BEACON"))):
        value = attributes.get(name)
        if value is None:
            raise AttributesError(f"instance attribute {name} is missing")
        if not HOST_PORT.match(value):
            raise AttributesError(f"instance attribute {name}='{value}' is not HOST:PORT")
        out[field] = value
    version = attributes.get(key("VERSION"))
    if version is None:
        raise AttributesError(f"instance attribute {key('VERSION')} is missing")
    if not VERSION.match(version):
        raise AttributesError(f"instance attribute {key('VERSION')}='{version}' is not a version like 1.18.0")
    out["version"] = version
    out.update(_release(attributes, version, arch))
    return out


def _release(attributes: dict[str, str], version: str, arch: str) -> dict[str, Any]:
    """The wheel for this CPU and the optional flags, from `pilot-daemon-release`
    (fleet/facts/data/pilot_releases.yaml)."""
    name = key("DAEMON_RELEASE")
    raw = attributes.get(name)
    if raw is None:
        raise AttributesError(f"instance attribute {name} is missing")
    try:
        release = json.loads(raw)
        wheel = release["wheels"][arch]
        url, sha256, flags = str(wheel["url"]), str(wheel["sha256"]), list(release["flags"])
        same = release["version"] == version
    except (ValueError, KeyError, TypeError):
        raise AttributesError(f"instance attribute {name} is not a release with a wheel for {arch} "
                                "(fleet/facts/data/pilot_releases.yaml)") from None
    if not same:
        raise AttributesError(f"instance attribute {name} describes {release['version']}, not "
                                f"{key('VERSION')}={version}")
    if not url.startswith("https://") or not re.fullmatch(r"[0-9a-f]{64}", sha256) or \
            not all(isinstance(f, str) and FLAG.match(f) for f in flags):
        raise AttributesError(f"instance attribute {name}: wheel url, sha256 or flags are malformed")
    return {"wheel_url": url, "wheel_sha256": sha256, "daemon_flags": tuple(flags)}


def fetch_attributes(metadata_url: str, etag: str = "", wait_seconds: int = 0) -> tuple[dict[str, str], str]:
    """This VM's instance attributes and their ETag; with `wait_seconds`, held until they differ from `etag` (or
    the wait ends), as Compute Engine documents for watching metadata."""
    query = "recursive=true"
    if wait_seconds:
        query += f"&wait_for_change=true&timeout_sec={wait_seconds}" + (f"&last_etag={etag}" if etag else "")
    request = urllib.request.Request(f"{metadata_url.rstrip('/')}/instance/attributes/?{query}",
                                     headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(request, timeout=wait_seconds + 15) as response:
        body = json.loads(response.read().decode())
        tag = response.headers.get("ETag", "")
    if not isinstance(body, dict):
        raise ValueError("the metadata server's attributes are not an object")
    return {str(k): str(v) for k, v in body.items()}, tag


def instance_value(metadata_url: str, path: str) -> str:
    """One instance value (name, external IP); "" when the metadata server has none."""
    request = urllib.request.Request(f"{metadata_url.rstrip('/')}/instance/{path}",
                                     headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.read().decode().strip())
    except OSError:
        return ""


class InstallError(RuntimeError):
    """A daemon version that cannot run here: download, sha256 or contract."""


def download(url: str, path: Path) -> None:
    """URL to PATH; with PILOT_DOWNLOAD_MIRROR set (tests), https://HOST/PATH comes from $MIRROR/HOST/PATH."""
    mirror = os.environ.get("PILOT_DOWNLOAD_MIRROR", "")
    source = f"{mirror.rstrip('/')}/{url.removeprefix('https://')}" if mirror and url.startswith("https://") else url
    try:
        with urllib.request.urlopen(source, timeout=120) as response, open(path, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except OSError as exc:
        raise InstallError(f"could not download {url}: {exc}") from None


def contract_problems(binary: Path, version: str, flags: Sequence[str]) -> str:
    """What keeps BINARY from being run as VERSION with these flags: its `-version`, and every flag the supervisor
    would pass in its `-h`. Empty when it is fit."""
    try:
        said = subprocess.run([str(binary), "-version"], capture_output=True, text=True, timeout=30, check=False)
        helptext = subprocess.run([str(binary), "-h"], capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"{binary} does not run: {exc}"
    if said.stdout.strip() != version:
        return f"{binary} reports version {said.stdout.strip()!r}, not {version}"
    defined = set(re.findall(r"^\s+(-[a-z0-9-]+)", helptext.stdout + helptext.stderr, flags=re.M))
    missing = sorted(set(BASE_FLAGS + list(flags)) - defined)
    return f"{binary} ({version}) lacks the flags {missing}" if missing else ""


def daemon_path(install_dir: str, version: str) -> Path:
    return Path(install_dir) / "versions" / version / "pilot-daemon"


def install_daemon(install_dir: str, version: str, url: str, sha256: str, flags: Sequence[str]) -> Path:
    """pilot-daemon VERSION under <install_dir>/versions/VERSION/, from its wheel (sha256-checked), contract-checked;
    kept when already there from a wheel of that same sha256, and fit. Never touches a binary agents run: each
    version has its own file."""
    binary = daemon_path(install_dir, version)
    source = binary.with_name("wheel.sha256")  # which wheel the binary came from
    with suppress(OSError):
        if source.read_text().strip() == sha256 and not contract_problems(binary, version, flags):
            return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent) as tmp:
        wheel = Path(tmp) / "pilot.whl"
        download(url, wheel)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != sha256:
            raise InstallError(f"sha256 mismatch for {url}: got {digest}, wanted {sha256}")
        staged = Path(tmp) / "pilot-daemon"
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open("pilotprotocol/bin/pilot-daemon") as src:
                staged.write_bytes(src.read())
        except (KeyError, zipfile.BadZipFile) as exc:
            raise InstallError(f"the wheel {url} has no pilotprotocol/bin/pilot-daemon: {exc}") from None
        staged.chmod(0o755)
        problem = contract_problems(staged, version, flags)
        if problem:
            raise InstallError(problem)
        source.unlink(missing_ok=True)
        staged.replace(binary)
        source.write_text(sha256 + "\n")
    return binary


@dataclasses.dataclass(frozen=True)
class Config:
    target: int
    daemon: str
    registry: str
    beacon: str
    base_udp_port: int
    state_dir: str
    run_dir: str
    # The fleet's pacing facts come from the config the startup script writes (fleet/facts/pilot.py renders their
    # defaults and bounds into it): no default of their own here.
    spawn_parallelism: int
    round_delay_seconds: float
    new_registrations_per_minute: float
    health_threshold: float
    rollout_max_unavailable: float
    version: str = ""
    # the optional flags this version accepts (its row of fleet/facts/data/pilot_releases.yaml), and where it came from
    daemon_flags: tuple[str, ...] = ()
    wheel_url: str = ""
    wheel_sha256: str = ""
    # where versions are installed (<install_dir>/versions/<version>/pilot-daemon) and the attributes are watched;
    # empty: no live changes (the tests' plain supervisors)
    install_dir: str = ""
    metadata_url: str = ""
    watch_seconds: int = 300
    # how long a rollout batch's agents have to be back and registered, beyond their paced starts
    rollout_registration_seconds: float = 60.0
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

    def stop_budget_seconds(self, agents: int) -> float:
        """Longest a paced stop of `agents` agents takes: what the unit's TimeoutStopSec must allow."""
        return math.ceil(agents / self.stop_batch) * self.stop_batch_delay_seconds + self.stop_grace_seconds

    def __post_init__(self) -> None:
        # a JSON config file holds the flags as a list; comparisons and fingerprints want one type
        object.__setattr__(self, "daemon_flags", tuple(self.daemon_flags))

    def with_settings(self, wanted: dict[str, Any], daemon: str) -> Config:
        return dataclasses.replace(self, **wanted, daemon=daemon)

    def write(self, path: Path) -> None:
        """Atomically, so a supervisor restarted at any moment reads a whole config."""
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "time": round(time.time(), 3), **fields}, sort_keys=True), flush=True)


def agent_socket(config: Config, index: int) -> Path:
    return Path(config.run_dir) / "agents" / f"{index}.sock"


def agent_dir(config: Config, index: int) -> Path:
    return Path(config.state_dir) / "agents" / str(index)


# Flags every release the fleet runs accepts (the contract check asks each new binary's `-h` for them) ...
BASE_FLAGS = ["-registry", "-beacon", "-listen", "-socket", "-identity", "-log-format", "-log-level",
              "-log-max-size", "-log-max-backups", "-endpoint", "-hostname"]
# ... and the optional ones, passed when the version's row lists them, with their values: the daemon's outbound
# feeds (telemetry, message of the day, skill manifest from GitHub) are off, as thousands of daemons must not each
# poll external hosts.
OPTIONAL_FLAGS: dict[str, list[str]] = {"-telemetry-url": [""], "-motd-feed-url": [""], "-no-skillinject": []}


def daemon_argv(config: Config, index: int) -> list[str]:
    """The one place that decides how an agent is started (the contract test checks it against every release)."""
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
            "-log-max-backups", "1"]
    for flag in config.daemon_flags:
        argv += [flag, *OPTIONAL_FLAGS[flag]]
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


def fingerprint(config: Config, index: int) -> tuple[str, ...]:
    """What an agent started now would run: its command line and the environment that matters (GOGC). An agent
    whose process differs (older version, GOGC, registry) is rolled over by a rollout."""
    return (*daemon_argv(config, index), f"GOGC={daemon_env(config, index).get('GOGC', '')}")


def process_fingerprint(pid: int) -> tuple[str, ...]:
    """The same of a running process, from /proc (for agents this supervisor did not start itself)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return ()
    gogc = next((e for e in environ if e.startswith("GOGC=")), "GOGC=")
    return (*args, gogc)


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


# What a rollout restarts an agent for; the rest of the config applies to the next starts as it is.
ROLLED_FIELDS = ("daemon", "version", "daemon_flags", "gogc", "registry", "beacon", "base_udp_port")


@dataclasses.dataclass
class Rollout:
    """Agents whose process is not what the config starts now, replaced in batches, each back and registered
    before the next."""

    reason: str
    previous: Config  # what a failed rollout goes back to
    total: int = 0
    done: int = 0
    batch: list[int] = dataclasses.field(default_factory=list)
    batch_deadline: float = 0.0
    reverting: bool = False


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
        # day two: the watcher thread hands the main loop a new config; the main loop alone applies it
        self.config_path: Path | None = None
        self.lock = threading.Lock()
        self.pending: Config | None = None
        self.wanted: dict[str, Any] | None = None  # the settings the attributes last asked for (watcher's)
        self.refused_attributes = ""
        self.fingerprints: dict[int, tuple[str, ...]] = {}  # pid -> what it runs
        self.rollout: Rollout | None = None
        self.rolled: set[int] = set()  # pids a rollout stopped: their exit is no failure and waits for no backoff
        self.last_change: dict[str, Any] = {}  # the latest rollout's (or refused version's) outcome, for reports
        self.wakeup_fd: int | None = None  # the write end of the main loop's wake-up pipe

    # -- one tick -------------------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.monotonic()
        self.take_pending(now)
        self.reap(now)
        if now >= self.next_scan:
            self.running = self.listing()
            self.next_scan = now + self.config.scan_seconds
            self.fingerprints = {pid: fp for pid, fp in self.fingerprints.items()
                                 if any(pid in pids for pids in self.running.values())}
        self.trim()
        self.mark_registered()
        if not self.stopping.is_set():
            self.roll(now)
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
            ran = self.fingerprints.pop(pid, ())
            if self.stopping.is_set():
                continue
            if pid in self.rolled:  # stopped for a rollout: back at once, with what the config starts now
                self.rolled.discard(pid)
                state.failures, state.not_before = 0, now
                continue
            self.restarts += 1
            refused = code != 0 and self.refused(index)
            rollout = self.rollout
            if rollout and index in rollout.batch and ran == fingerprint(self.config, index) and \
                    (code != 0 or lived < self.config.settle_seconds):
                self.fail_rollout(f"agent {index} exited {code} after {lived:.1f} s with version "
                                  f"{self.config.version}" + (f": {refused}" if refused else ""), now)
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
        self.fingerprints[proc.pid] = fingerprint(self.config, index)
        state = self.agents.setdefault(index, AgentState())
        state.started_at, state.log_offset = now, offset
        self.running.setdefault(index, []).append(proc.pid)
        log("agent-started", index=index, pid=proc.pid, fresh_identity=fresh)

    # -- day two: live changes -------------------------------------------------------------------------------
    def watch(self) -> None:
        """The watcher thread: long-polls the instance attributes, checks them, installs a new version, and hands
        the main loop the config to converge to. Never touches agents itself."""
        etag, delay = "", 1.0
        while not self.stopping.is_set():
            try:
                attributes, etag = fetch_attributes(self.config.metadata_url, etag,
                                                    self.config.watch_seconds if etag else 0)
            except (OSError, ValueError) as exc:
                log("metadata-watch-failed", error=str(exc), retry_in_seconds=delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 60.0)
                continue
            delay = 1.0
            self.consider(attributes)
            if not etag:  # a metadata server without ETags cannot hold a request: poll gently instead
                self.stopping.wait(self.config.tick_seconds * 5)

    def consider(self, attributes: dict[str, str]) -> None:
        try:
            wanted = settings(attributes)
        except AttributesError as exc:
            if str(exc) != self.refused_attributes:
                log("attributes-refused", problem=str(exc), keeping_version=self.config.version)
                self.last_change = {"state": "refused", "reason": str(exc)}
            self.refused_attributes = str(exc)
            return
        self.refused_attributes = ""
        if wanted == self.wanted:
            return
        self.wanted = wanted
        current = self.config
        daemon = current.daemon
        if (wanted["version"], wanted["daemon_flags"], wanted["wheel_sha256"]) != \
                (current.version, current.daemon_flags, current.wheel_sha256):
            if not current.install_dir:
                log("version-refused", version=wanted["version"], reason="no install_dir to install it into")
                return
            log("version-installing", version=wanted["version"], wheel=wanted["wheel_url"])
            try:
                daemon = str(install_daemon(current.install_dir, wanted["version"], wanted["wheel_url"],
                                            wanted["wheel_sha256"], wanted["daemon_flags"]))
            except InstallError as exc:
                log("version-refused", version=wanted["version"], reason=str(exc), keeping_version=current.version)
                self.last_change = {"state": "refused", "version": wanted["version"], "reason": str(exc)}
                return
            log("version-installed", version=wanted["version"], daemon=daemon)
        with self.lock:
            self.pending = current.with_settings(wanted, daemon)
        self.nudge()

    def nudge(self) -> None:
        """Wake the main loop now (a pending change, a child's exit) instead of at its next tick."""
        if self.wakeup_fd is not None:
            with suppress(BlockingIOError, OSError):
                os.write(self.wakeup_fd, b"!")

    def take_pending(self, now: float) -> None:
        with self.lock:
            new, self.pending = self.pending, None
        if new is None or new == self.config or self.stopping.is_set():
            return
        old = self.config
        changed = {f.name: [getattr(old, f.name), getattr(new, f.name)] for f in dataclasses.fields(Config)
                   if getattr(old, f.name) != getattr(new, f.name) and f.name not in ("wheel_url", "wheel_sha256")}
        self.config = new
        self.bucket.rate = new.new_registrations_per_minute / 60.0
        if new.target > old.target:
            self.started = now  # a raised target ramps up like a start-up: healthy while on schedule
        log("reconciling", changes=changed)
        if any(getattr(old, name) != getattr(new, name) for name in ROLLED_FIELDS):
            reason = (f"version {old.version} -> {new.version}" if old.version != new.version else
                      ", ".join(name for name in ROLLED_FIELDS if getattr(old, name) != getattr(new, name)))
            previous = self.rollout.previous if self.rollout and not self.rollout.reverting else old
            self.rollout = Rollout(reason, previous)
            log("rollout-started", reason=reason, batch=self.batch_size)
        self.persist()

    @property
    def batch_size(self) -> int:
        return max(1, math.floor(self.config.target * self.config.rollout_max_unavailable))

    def fingerprint_of(self, pid: int) -> tuple[str, ...]:
        if pid not in self.fingerprints:
            self.fingerprints[pid] = process_fingerprint(pid)
        return self.fingerprints[pid]

    def current(self, index: int) -> bool:
        """Agent `index` runs as the config starts it now, once (not a leftover second process)."""
        pids = self.running.get(index, [])
        return len(pids) == 1 and self.fingerprint_of(pids[0]) == fingerprint(self.config, index)

    def stale(self) -> list[int]:
        return [i for i in sorted(self.running) if i < self.config.target and not self.current(i)]

    def roll(self, now: float) -> None:
        rollout = self.rollout
        if rollout is None:
            return
        if rollout.batch:
            if all(self.current(i) and agent_socket(self.config, i).exists() for i in rollout.batch):
                rollout.done += len(rollout.batch)
                log("rollout-progress", done=rollout.done, of=rollout.total, reason=rollout.reason)
                rollout.batch = []
            elif now > rollout.batch_deadline:
                late = [i for i in rollout.batch if not agent_socket(self.config, i).exists()]
                self.fail_rollout(f"agents {late[:10]} of version {self.config.version} were not back and "
                                  "registered in time", now)
                return
            else:
                return
        stale = self.stale()
        if not stale:
            state = "reverted" if rollout.reverting else "done"
            log(f"rollout-{state}", reason=rollout.reason, agents=rollout.done)
            if not rollout.reverting:
                self.last_change = {"state": "done", "reason": rollout.reason, "done": rollout.done,
                                    "of": rollout.total}
            self.rollout = None
            return
        rollout.total = max(rollout.total, rollout.done + len(stale))
        rollout.batch = stale[:self.batch_size]
        rounds = math.ceil(len(rollout.batch) / self.config.spawn_parallelism)
        rollout.batch_deadline = (now + rounds * self.config.round_delay_seconds
                                  + self.config.rollout_registration_seconds)
        for index in rollout.batch:
            for pid in self.running.get(index, []):
                self.rolled.add(pid)
                _signal(pid, signal.SIGTERM)
        log("rollout-batch", agents=rollout.batch, done=rollout.done, of=rollout.total)

    def fail_rollout(self, reason: str, now: float) -> None:
        """The new processes do not come back registered: go back, in batches too, to what ran before."""
        rollout = self.rollout
        assert rollout is not None
        bad = self.config
        self.config = dataclasses.replace(bad, **{name: getattr(rollout.previous, name) for name in ROLLED_FIELDS})
        log("rollout-failed", reason=reason, rollout=rollout.reason, back_to_version=self.config.version)
        self.last_change = {"state": "failed", "reason": f"{rollout.reason}: {reason}", "done": rollout.done,
                            "of": rollout.total}
        self.rollout = Rollout(f"revert of {rollout.reason}", self.config, reverting=True)
        self.persist()

    def persist(self) -> None:
        if self.config_path is not None:
            self.config.write(self.config_path)

    def rollout_status(self) -> dict[str, Any]:
        rollout = self.rollout
        if rollout is not None:
            return {"state": "reverting" if rollout.reverting else "rolling", "reason": rollout.reason,
                    "done": rollout.done, "of": rollout.total}
        return dict(self.last_change)

    # -- reporting ------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        running = sum(1 for i in self.view if i < self.config.target)
        return {"target": self.config.target, "running": running, "restarts": self.restarts,
                "stopping": self.stopping.is_set(), "updated": time.time(), "ticks": self.ticks,
                "tick_seconds": round(self.last_tick_seconds, 6), "version": self.config.version,
                "rollout": self.rollout_status()}

    @property
    def rampup_seconds(self) -> float:
        """How long a start-up of `target` fresh identities may take at this pacing, with 50% slack + 10 minutes."""
        c = self.config
        by_registry = max(0, c.target - c.new_registration_burst) * 60 / c.new_registrations_per_minute
        by_rounds = math.ceil(c.target / c.spawn_parallelism) * c.round_delay_seconds
        return max(by_registry, by_rounds) * 1.5 + 600

    def healthy(self) -> bool:
        """Running >= target x threshold; or, so that a group's autohealing does not recreate a VM that is doing
        what it was asked, a start-up (or a raised target) still on schedule, or a rollout with no more than its
        one batch down."""
        status = self.status()
        if status["running"] >= math.ceil(status["target"] * self.config.health_threshold):
            return True
        if self.stopping.is_set():
            return False
        if self.rollout is not None and status["running"] >= status["target"] - self.batch_size:
            return True
        ramping = time.monotonic() - self.started < self.rampup_seconds
        return self.config.healthy_during_rampup and ramping

    def report(self, now: float, force: bool = False) -> None:
        status = self.status()
        path = Path(self.config.run_dir) / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, sort_keys=True) + "\n")
        tmp.replace(path)
        if not self.config.guest_attributes_url or (now < self.next_publish and not force):
            return
        self.next_publish = now + self.config.guest_attribute_interval_seconds
        rollout = status["rollout"]
        values = {f"agents-{name}": str(status[name]) for name in ("target", "running", "restarts")}
        if rollout:  # e.g. "rolling 1200/3000: version 1.17.0 -> 1.18.0", "failed ...: ...", "done ..."
            progress = f" {rollout['done']}/{rollout['of']}" if "of" in rollout else ""
            values["rollout"] = f"{rollout['state']}{progress}: {rollout['reason']}"[:1000]
        for name, value in values.items():
            if self.published.get(name) != value and put_guest_attribute(self.config, name, value):
                self.published[name] = value

    # -- stop -----------------------------------------------------------------------------------------------
    def stop_all(self) -> None:
        self.stopping.set()
        now = time.monotonic()
        self.reap(now)
        pids = [pid for _, pids in sorted(self.listing().items(), reverse=True) for pid in pids]
        log("stopping", agents=len(pids), batch=self.config.stop_batch)
        for offset in range(0, len(pids), self.config.stop_batch):
            batch = pids[offset:offset + self.config.stop_batch]
            for pid in batch:
                _signal(pid, signal.SIGTERM)
            log("stop-batch", agents=len(batch), left=len(pids) - offset - len(batch))
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
        ("pilot_rollout_in_progress", "gauge", "1 while agents roll over to a new version or setting",
         int(supervisor.rollout is not None)),
        ("pilot_rollout_agents_done", "gauge", "agents the current or last rollout replaced",
         status["rollout"].get("done", 0)),
        ("pilot_rollout_agents_total", "gauge", "agents the current or last rollout replaces",
         status["rollout"].get("of", 0)),
        ("pilot_supervisor_tick_seconds", "gauge", "how long the last tick took",
         round(supervisor.last_tick_seconds, 6)),
    ]
    version = status["version"].replace("\\", "").replace('"', "")
    return "".join(f"# HELP {name} {text}\n# TYPE {name} {kind}\n{name} {value}\n"
                   for name, kind, text, value in samples) + \
        f'# HELP pilot_daemon_info the pilot-daemon version agents start with\n# TYPE pilot_daemon_info gauge\n' \
        f'pilot_daemon_info{{version="{version}"}} 1\n'



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


# However often children exit, at most this many ticks a second.
MIN_TICK_GAP_SECONDS = 0.05


def run(config: Config, config_path: Path) -> int:
    with locked(Path(config.run_dir)):
        supervisor = Supervisor(config)
        supervisor.config_path = config_path
        # The loop sleeps in select() on a pipe that signals write to (set_wakeup_fd): an agent's exit (SIGCHLD)
        # or a stop request wakes it at once, so a rollout batch goes on as soon as its agents are gone.
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        supervisor.wakeup_fd = wake_write
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a Python handler, so the wakeup fd is written
        signal.signal(signal.SIGTERM, lambda *_: supervisor.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: supervisor.stopping.set())
        health = serve_health(supervisor)
        log("supervising", target=config.target, daemon=config.daemon, version=config.version,
            base_udp_port=config.base_udp_port, watching=bool(config.metadata_url))
        if config.metadata_url:
            threading.Thread(target=supervisor.watch, daemon=True, name="watch").start()
        while not supervisor.stopping.is_set():
            began = time.monotonic()
            supervisor.tick()
            now = time.monotonic()
            supervisor.ticks += 1
            supervisor.last_tick_seconds = now - began
            # wake for the next tick, or for the next spawn round if it is due sooner, or on a signal or a change
            wake = now + supervisor.config.tick_seconds
            if now < supervisor.next_round < wake:
                wake = supervisor.next_round
            if not supervisor.stopping.is_set():
                select.select([wake_read], [], [], max(0.0, wake - now))
                with suppress(BlockingIOError):
                    while os.read(wake_read, 4096):
                        pass
                gap = began + MIN_TICK_GAP_SECONDS - time.monotonic()
                if gap > 0:
                    time.sleep(gap)
        signal.set_wakeup_fd(-1)
        supervisor.stop_all()
        if health:
            health.shutdown()
    return 0


def prepare(args: argparse.Namespace) -> int:
    """The boot path's swarm step: check the attributes, install their daemon version, write the config. Prints
    "changed" or "unchanged" (the startup script restarts a running unit only on "changed")."""
    attributes, _ = fetch_attributes(args.metadata_url)
    wanted = settings(attributes)
    daemon = install_daemon(args.install_dir, wanted["version"], wanted["wheel_url"], wanted["wheel_sha256"],
                            wanted["daemon_flags"])
    name = instance_value(args.metadata_url, "name")
    address = instance_value(args.metadata_url, "network-interfaces/0/access-configs/0/external-ip")
    host = {"daemon": args.daemon or str(daemon), "state_dir": args.state_dir, "run_dir": args.run_dir,
            "hostname_prefix": name if re.fullmatch(r"[a-z][a-z0-9-]*", name) else "",
            "endpoint_ip": address if re.fullmatch(r"[0-9.]+", address) else "",
            "guest_attributes_url": f"{args.metadata_url.rstrip('/')}/instance/guest-attributes/pilot",
            "metadata_url": args.metadata_url, "install_dir": args.install_dir}
    config = Config(**wanted, **host)
    with suppress(SystemExit):
        if Config.load(args.config) == config:
            print("unchanged")
            return 0
    args.config.parent.mkdir(parents=True, exist_ok=True)
    config.write(args.config)
    print("changed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pilot-supervisor", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "supervise the agents until SIGTERM"),
                       ("argv", "print the command line of agent INDEX (for operators and the contract test)"),
                       ("stop-budget", "print the seconds a paced stop of the largest target may take"),
                       ("settings", "check this VM's attributes; print the named settings"),
                       ("prepare", "check this VM's attributes, install their daemon, write the config")):
        cmd = sub.add_parser(name, help=text)
        if name in ("settings", "prepare"):
            cmd.add_argument("--metadata-url", required=True)
        if name == "settings":
            cmd.add_argument("fields", nargs="+")
            continue
        cmd.add_argument("--config", type=Path, required=True)
        if name == "argv":
            cmd.add_argument("index", type=int)
        if name == "prepare":
            for flag in ("--install-dir", "--state-dir", "--run-dir"):
                cmd.add_argument(flag, required=True)
            cmd.add_argument("--daemon", default="", help="run this binary instead (a test seam)")
    args = parser.parse_args(argv)
    try:
        if args.command == "settings":
            wanted = settings(fetch_attributes(args.metadata_url)[0])
            print(" ".join(str(wanted[name]) for name in args.fields))
            return 0
        if args.command == "prepare":
            return prepare(args)
    except (AttributesError, InstallError) as exc:
        print(f"pilot-supervisor: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, AttributesError) else 1
    except (OSError, ValueError) as exc:
        print(f"pilot-supervisor: cannot read this VM's attributes from {args.metadata_url}: {exc}",
              file=sys.stderr)
        return 1
    config = Config.load(args.config)
    if args.command == "argv":
        print(json.dumps(daemon_argv(config, args.index)))
        return 0
    if args.command == "stop-budget":
        try:
            largest = int(ATTRIBUTE_RULES["bounds"]["target_agents"][2])
        except KeyError:
            raise SystemExit("pilot-supervisor: not rendered with the fleet's attribute rules") from None
        # a live change may raise the target up to its bound without a new unit: budget for the largest
        print(math.ceil(config.stop_budget_seconds(largest)))
        return 0
    return run(config, args.config)


if __name__ == "__main__":
    sys.exit(main())
