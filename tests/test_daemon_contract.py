"""The supervisor's command line against the real pilot-daemon from the pinned PyPI wheels (no stand-in here): every
release in fleet/facts/data/pilot_releases.yaml, each with its own flags."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fleet.facts import pilot
from fleet.facts.pilot_releases import known_versions, releases
from testbed.supervisor_harness import free_udp_ports, sv
from tests.conftest import extract_daemon


def _config(daemon: Path, base: Path, version: str = pilot.PILOT_VERSION) -> object:
    return sv.config.Config(
        target_agents=1, daemon=str(daemon), registry="127.0.0.1:1", beacon="127.0.0.1:1",
        base_udp_port=free_udp_ports(1), state_dir=str(base / "state"), run_dir=str(base / "run"),
        hostname_prefix="swarm-contract", endpoint_ip="127.0.0.1", spawn_parallelism=1, round_delay_seconds=3.0,
        new_registrations_per_minute=10, health_threshold=0.95, rollout_max_unavailable=0.1, version=version,
        daemon_flags=releases()[version].flags, registry_fingerprint="0" * 64)


@pytest.mark.parametrize("version", known_versions())
def test_every_release_is_its_version_and_takes_every_flag_the_supervisor_passes(version: str,
                                                                                  tmp_path: Path) -> None:
    """Each release with its own row: `-version` says it, `-h` defines every flag passed, and the supervisor's own
    contract check (what it runs before a live upgrade) finds nothing wrong."""
    daemon = extract_daemon(version, tmp_path)
    out = subprocess.run([str(daemon), "-version"], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == version
    helptext = subprocess.run([str(daemon), "-h"], capture_output=True, text=True, check=False, timeout=30).stderr
    defined = set(re.findall(r"^\s+-([a-z0-9-]+)", helptext, flags=re.M))
    argv = sv.agents.daemon_argv(_config(daemon, tmp_path, version), 0)
    passed = {arg[1:] for arg in argv[1:] if arg.startswith("-")}
    assert passed and passed <= defined, passed - defined
    assert {"telemetry-url", "motd-feed-url", "no-skillinject", "identity", "socket", "listen", "registry-tls",
            "registry-fingerprint"} <= passed
    assert sv.install.contract_problems(daemon, version, list(releases()[version].flags)) == ""
    other = next(v for v in known_versions() if v != version)
    assert f"reports version {version!r}, not {other}" in sv.install.contract_problems(daemon, other, [])
    assert "lacks the flags ['-no-such-flag']" in sv.install.contract_problems(daemon, version,
                                                                                       ["-no-such-flag"])


def test_the_binary_starts_with_the_supervisors_argv(real_daemon: Path, tmp_path: Path) -> None:
    """Flag errors exit at once with status 2; accepted flags get as far as dialling the (closed) registry."""
    config = _config(real_daemon, tmp_path)
    argv = sv.agents.daemon_argv(config, 0)
    home = sv.agents.agent_dir(config, 0)
    home.mkdir(parents=True)
    sv.agents.agent_socket(config, 0).parent.mkdir(parents=True)
    log = home / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=home,
                                env=sv.agents.daemon_env(config, 0))
    try:
        deadline = time.monotonic() + 20
        while "registry dial failed" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert "flag provided but not defined" not in text
        assert "registry dial failed" in text and "127.0.0.1:1" in text
        assert (home / "identity.json").exists()  # the identity lands in the agent's durable directory
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


# What pilot-daemon 1.18.0 reaches by default (read from its binary and seen in its log on a host without DNS).
PUBLIC_HOSTS = ("raw.githubusercontent.com", "telemetry.pilotprotocol.network", "pilot-changelog", "pilot-skills",
                "34.71.57.205", "beacon.pilotprotocol.network", "registry.pilotprotocol.network")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="a host without a network needs root")
def test_the_daemon_reaches_no_public_host(real_daemon: Path, tmp_path: Path) -> None:
    """The supervisor's exact argv and environment (the log level raised to debug, so that every attempt shows), in a
    network namespace with loopback only: no DNS, no internet. Nothing in the log may name a public host."""
    config = _config(real_daemon, tmp_path)
    argv = sv.agents.daemon_argv(config, 0)
    argv[argv.index("-log-level") + 1] = "debug"
    home = sv.agents.agent_dir(config, 0)
    home.mkdir(parents=True)
    sv.agents.agent_socket(config, 0).parent.mkdir(parents=True)
    namespace = f"pilot-fleet-quiet-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    log = home / "daemon.log"
    try:
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
        with log.open("wb") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", namespace, *argv], stdout=out, stderr=subprocess.STDOUT,
                                    cwd=home, env=sv.agents.daemon_env(config, 0))
        try:
            deadline = time.monotonic() + 20  # its start-up calls are made by the time it dials the registry
            while "registry dial failed" not in log.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)
    text = log.read_text()
    assert "registry dial failed" in text
    assert f"fetch catalogue from file://{home}/app-catalogue-disabled.json" in text  # the environment took effect
    assert "trustedagents: runtime refresh disabled" in text
    named = [host for host in PUBLIC_HOSTS if host in text]
    assert not named, [line for line in text.splitlines() if any(host in line for host in named)]
