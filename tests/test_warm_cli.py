"""The warm CLI the tests run commands through (testbed/warm_cli.py) is `python -m fleet`: the same output, files
and exit status as a cold process, for a whole plan, for a command that fails, and for one that reads its input and
its environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testbed.stats_server import Answer, StatsServer
from tests.conftest import REPO, run_fleet


def _cold(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleet", *args], cwd=REPO, capture_output=True, text=True,
                          input=stdin, env={**os.environ, **(env or {})}, timeout=120, check=False)


def test_a_warm_plan_is_a_cold_plan_byte_for_byte(tmp_path: Path) -> None:
    cold_json, warm_json = tmp_path / "cold.json", tmp_path / "warm.json"
    cold = _cold("plan", "--stack", "dev", "--json", str(cold_json))
    warm = run_fleet("plan", "--stack", "dev", "--json", str(warm_json))
    assert cold.returncode == warm.returncode == 0, cold.stderr + warm.stderr
    assert warm.stdout.replace(str(warm_json), str(cold_json)) == cold.stdout and warm.stderr == cold.stderr
    assert warm_json.read_bytes() == cold_json.read_bytes()


@pytest.mark.parametrize("args", [["plan", "--stack", "no-such-stack"], ["capacity", "--agents", "ten"],
                                  ["no-such-command"]])
def test_a_failing_command_fails_the_same_way(args: list[str]) -> None:
    cold, warm = _cold(*args), run_fleet(*args)
    assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    assert warm.returncode != 0 and warm.stderr


def test_a_command_reads_its_input_and_environment_as_a_cold_one_does(planned: Any) -> None:
    """verify reads the stack outputs from stdin and the Compute API's address and token from the environment: with
    them its per-host check asks that address (nobody listens: one line naming it), without them Application
    Default Credentials (none here: another line). Both must reach the command as they reach a cold one."""
    with StatsServer([Answer.stats(total_nodes=40, active_nodes=40)]).serving() as server:
        outputs = json.dumps({**planned("dev")["outputs"], "statsUrl": server.url})
        said = []
        for env in ({"PILOT_FLEET_COMPUTE_API": "http://127.0.0.1:9/compute/v1", "PILOT_FLEET_ACCESS_TOKEN": "t"},
                    {}):
            cold = _cold("verify", "--outputs", "-", stdin=outputs, env=env)
            warm = run_fleet("verify", "--outputs", "-", stdin=outputs, env=env)
            assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)
            assert "40 of 200 agents online" in warm.stdout  # the outputs came through stdin
            said.append(warm.stdout)
    assert "Compute Engine API unreachable" in said[0] and "no Google credentials" in said[1], said
