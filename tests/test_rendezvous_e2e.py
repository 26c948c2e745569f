"""End to end with a real rendezvous: set PILOT_RENDEZVOUS_BIN to its binary (cmd/rendezvous of the Pilot Protocol
Go repository; it is not on PyPI), otherwise these tests are skipped. Real pilot-daemons from the pinned wheel,
started by the real supervisor, register on loopback; `fleet verify` then judges the count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boot_sandbox import cached_wheel, free_tcp_port
from tests.conftest import REPO
from tests.supervisor_harness import FAST, supervised

RENDEZVOUS_BIN = os.environ.get("PILOT_RENDEZVOUS_BIN", "")
pytestmark = pytest.mark.skipif(not RENDEZVOUS_BIN, reason="PILOT_RENDEZVOUS_BIN is not set")
AGENTS = 3


@pytest.fixture
def rendezvous(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    registry, beacon, http = free_tcp_port(), free_tcp_port(), free_tcp_port()
    proc = subprocess.Popen([RENDEZVOUS_BIN, "-registry-addr", f"127.0.0.1:{registry}", "-beacon-addr",
                             f"127.0.0.1:{beacon}", "-http", f"127.0.0.1:{http}", "-store",
                             str(tmp_path / "registry.json"), "-log-format", "json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stats = f"http://127.0.0.1:{http}/api/stats"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(stats, timeout=2):
                break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "the rendezvous did not come up"
            time.sleep(0.2)
    try:
        yield f"127.0.0.1:{registry}", f"127.0.0.1:{beacon}", stats
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def daemon(tmp_path: Path) -> Path:
    _, wheel = cached_wheel()
    binary = tmp_path / "pilot-daemon"
    with zipfile.ZipFile(wheel) as archive:
        binary.write_bytes(archive.read("pilotprotocol/bin/pilot-daemon"))
    binary.chmod(0o755)
    return binary


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleet", "verify", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=180, check=False)


def test_real_daemons_register_and_verify_judges_the_count(rendezvous: tuple[str, str, str], daemon: Path,
                                                           tmp_path: Path) -> None:
    registry, beacon, stats = rendezvous
    with supervised(tmp_path, AGENTS, daemon=str(daemon), registry=registry, beacon=beacon,
                    settle_seconds=5.0, **{k: v for k, v in FAST.items() if k != "settle_seconds"}) as box:
        box.start()
        ok = _verify("--stats-url", stats, "--expected", str(AGENTS), "--wait", "120", "--interval", "2", "--json")
        assert ok.returncode == 0, ok.stdout
        doc = json.loads(ok.stdout)
        assert doc["verdict"] == "ok" and doc["online"] >= AGENTS and doc["responseShape"] == "rendezvous"
        assert box.status()["running"] == AGENTS
        short = _verify("--stats-url", stats, "--expected", str(AGENTS + 2), "--json")
        assert short.returncode == 1 and json.loads(short.stdout)["verdict"] == "degraded"
