"""The policy pack is self-contained: it runs from a copy of policies/ alone, its facts generated from the fleet's
own modules into fleet_policies/facts.py and kept in step here."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from fleet.generators.policy_facts import FACTS_PATH, render_facts
from fleet.policy_runner.analyzer import analyze_with, running_pack
from tests.policy_harness import PACK_DIR, plan_of, resources_from_plan


def test_the_packs_facts_are_the_fleets() -> None:
    """A changed port, key, machine type or budget formula in fleet/ must be regenerated into the pack."""
    assert FACTS_PATH.read_text() == render_facts(), (
        "policies/fleet_policies/facts.py is stale: run `python -m fleet.generators.policy_facts`")


def test_the_facts_follow_a_changed_fact(monkeypatch: Any) -> None:
    from fleet.facts import pilot

    monkeypatch.setattr(pilot, "SUPERVISOR_HEALTH_PORT", 8181)
    assert "SUPERVISOR_HEALTH_PORT = 8181\n" in render_facts()
    assert render_facts() != FACTS_PATH.read_text()


def test_the_pack_runs_from_a_copy_of_its_folder_alone(planned: Any, tmp_path: Path) -> None:
    """As `pulumi policy publish` uploads it: policies/ copied elsewhere, where this repository is not importable,
    judges the prod plan clean and a broken one not."""
    pack = tmp_path / "pack"
    shutil.copytree(PACK_DIR, pack, ignore=shutil.ignore_patterns("venv", "__pycache__"))
    nothing_else = subprocess.run([sys.executable, "-c", "import fleet"], cwd=pack, capture_output=True, text=True,
                                  check=False)
    assert nothing_else.returncode == 1 and "No module named 'fleet'" in nothing_else.stderr
    resources = resources_from_plan(planned("prod"))
    broken = copy.deepcopy(resources)
    next(r for r in broken if r["name"] == "swarm-3" and r["type"].endswith(":Instance"))["inputs"]["metadata"][
        "pilot-target-agents"] = "2000"
    with running_pack(pack) as stub:
        clean = analyze_with(stub, plan_of(resources), pack, "prod", {})
        over = analyze_with(stub, plan_of(broken), pack, "prod", {})
    assert not [v for v in clean.violations if v.enforcement == "mandatory"]
    assert {(v.policy, v.urn.rsplit("::", 1)[-1]) for v in over.violations if v.enforcement == "mandatory"} == {
        ("agents-fit-memory", "swarm-3"), ("pilot-ports-open", "swarm-3")}
