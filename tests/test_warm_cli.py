"""The warm CLI the tests run commands through (testbed/warm_cli.py) is `python -m fleet`: the same output, files
and exit status as a cold process, for a whole plan and for a command that fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_fleet


def _cold(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleet", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)


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
