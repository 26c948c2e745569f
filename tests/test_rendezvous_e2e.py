"""End to end with a real rendezvous (built from the pinned public source, testbed/real_rendezvous.py): real
pilot-daemons from the pinned wheel, started by the real supervisor, register on loopback; `fleet verify` then judges
the count."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.real_rendezvous import Rendezvous, rendezvous_on_loopback
from testbed.supervisor_harness import FAST, supervised
from tests.conftest import run_fleet

AGENTS = 3


@pytest.fixture
def rendezvous(tmp_path: Path) -> Iterator[Rendezvous]:
    with rendezvous_on_loopback(tmp_path) as rv:
        yield rv


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return run_fleet("verify", *args, timeout=180)


def test_real_daemons_register_and_verify_judges_the_count(rendezvous: Rendezvous, real_daemon: Path,
                                                           tmp_path: Path, short_run_dir: str) -> None:
    registry, beacon, stats = rendezvous.registry, rendezvous.beacon, rendezvous.stats_url
    with supervised(tmp_path, AGENTS, daemon=str(real_daemon), registry=registry, beacon=beacon,
                    run_dir=short_run_dir,
                    settle_seconds=5.0, **{k: v for k, v in FAST.items() if k != "settle_seconds"}) as box:
        box.start()
        ok = _verify("--stats-url", stats, "--expected", str(AGENTS), "--wait", "120", "--interval", "2", "--json")
        assert ok.returncode == 0, ok.stdout
        doc = json.loads(ok.stdout)
        assert doc["verdict"] == "ok" and doc["online"] >= AGENTS and doc["responseShape"] == "rendezvous"
        assert box.status()["running"] == AGENTS
        short = _verify("--stats-url", stats, "--expected", str(AGENTS + 2), "--json")
        assert short.returncode == 1 and json.loads(short.stdout)["verdict"] == "degraded"
