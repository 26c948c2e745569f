"""How an agent is started and how it is found: its command line, its environment, its socket and directory, and
the /proc scan that lists the running ones.

Each agent `i` has UDP port base + i, socket `<run_dir>/agents/<i>.sock` and a durable directory
`<state_dir>/agents/<i>/` holding its `-identity`, so a reboot re-registers the same identities."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

from pilot_supervisor.config import Config

REGISTERED_MARKER = "registered"
# What pilot-daemon 1.18.0 logs as it exits when the registry answered its registration with an error. It does not
# pass the registry's reason on ("registry: request failed"; the rendezvous' own log says "registration rate
# limited" or "standby mode"), so any refused registration counts. Unreachable registries log "registry dial".
REFUSED_REGISTRATION = "daemon start: register:"

# Flags every release the fleet runs accepts (the contract check asks each new binary's `-h` for them) ...
BASE_FLAGS = ["-registry", "-beacon", "-listen", "-socket", "-identity", "-log-format", "-log-level",
              "-log-max-size", "-log-max-backups", "-endpoint", "-hostname", "-registry-tls", "-registry-fingerprint"]
# ... and the optional ones, passed when the version's row lists them, with their values: the daemon's outbound
# feeds (telemetry, message of the day, skill manifest from GitHub) are off, as thousands of daemons must not each
# poll external hosts.
OPTIONAL_FLAGS: dict[str, list[str]] = {"-telemetry-url": [""], "-motd-feed-url": [""], "-no-skillinject": []}


def agent_socket(config: Config, index: int) -> Path:
    return Path(config.run_dir) / "agents" / f"{index}.sock"


def agent_dir(config: Config, index: int) -> Path:
    return Path(config.state_dir) / "agents" / str(index)


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
    if config.registry_fingerprint:  # TLS, the certificate pinned (the daemon's default trust is the pin)
        argv += ["-registry-tls", "-registry-fingerprint", config.registry_fingerprint]
    for flag in config.daemon_flags:
        argv += [flag, *OPTIONAL_FLAGS[flag]]
    if config.registration_addresses:  # its peers reach it where it registers from
        argv += ["-endpoint", f"{config.registration_addresses[config.address_of(index)]}:{port}"]
    elif config.endpoint_ip:
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


def list_agents(config: Config, candidates: Iterable[int] | None = None,
                uids: set[int] | None = None) -> dict[int, list[int]]:
    """Agent index -> pids of processes started with `-socket <run_dir>/agents/<index>.sock`, among CANDIDATES
    (the agents' cgroup: privilege.py), or else among every process of the users UIDS (one scan of /proc)."""
    sockets = Path(config.run_dir) / "agents"
    prefix = f"{sockets}/"
    found: dict[int, list[int]] = {}
    if candidates is None:
        candidates = (int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit())
    for pid in candidates:
        try:
            if uids is not None and os.stat(f"/proc/{pid}").st_uid not in uids:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
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
            found.setdefault(int(name), []).append(pid)
    return found


def send_signal(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)
