"""The supervisor's command line against the real pilot-daemon from the pinned PyPI wheel (no stand-in here)."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from fleet import pilot
from tests.boot_sandbox import cached_wheel
from tests.supervisor_harness import free_udp_ports, supervisor_module


@pytest.fixture(scope="module")
def real_daemon(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheel, path = cached_wheel()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == wheel.sha256, "the pinned sha256 does not match PyPI's"
    target = tmp_path_factory.mktemp("pilot") / "pilot-daemon"
    with zipfile.ZipFile(path) as archive:
        target.write_bytes(archive.read("pilotprotocol/bin/pilot-daemon"))
    target.chmod(0o755)
    return target


def _config(daemon: Path, base: Path) -> object:
    return supervisor_module.Config(
        target=1, daemon=str(daemon), registry="127.0.0.1:1", beacon="127.0.0.1:1",
        base_udp_port=free_udp_ports(1), state_dir=str(base / "state"), run_dir=str(base / "run"),
        hostname_prefix="swarm-contract", endpoint_ip="127.0.0.1")


def test_pinned_version_is_the_binarys(real_daemon: Path) -> None:
    out = subprocess.run([str(real_daemon), "-version"], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == pilot.PILOT_VERSION


def test_every_flag_the_supervisor_passes_is_in_the_binarys_help(real_daemon: Path, tmp_path: Path) -> None:
    helptext = subprocess.run([str(real_daemon), "-h"], capture_output=True, text=True, check=False,
                              timeout=30).stderr
    defined = set(re.findall(r"^\s+-([a-z0-9-]+)", helptext, flags=re.M))
    argv = supervisor_module.daemon_argv(_config(real_daemon, tmp_path), 0)
    passed = {arg[1:] for arg in argv[1:] if arg.startswith("-")}
    assert passed and passed <= defined, passed - defined
    assert {"telemetry-url", "motd-feed-url", "no-skillinject", "identity", "socket", "listen"} <= passed


def test_the_binary_starts_with_the_supervisors_argv(real_daemon: Path, tmp_path: Path) -> None:
    """Flag errors exit at once with status 2; accepted flags get as far as dialling the (closed) registry."""
    config = _config(real_daemon, tmp_path)
    argv = supervisor_module.daemon_argv(config, 0)
    home = supervisor_module.agent_dir(config, 0)
    home.mkdir(parents=True)
    supervisor_module.agent_socket(config, 0).parent.mkdir(parents=True)
    log = home / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=home,
                                env={"PATH": "/usr/bin:/bin", "HOME": str(home)})
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
