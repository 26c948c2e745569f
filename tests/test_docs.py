"""Docs that cannot drift: the configuration reference is the models', the README stays an operator's front door,
and every command a doc shows is run here, or the doc says why it cannot be (`<!-- not run: REASON -->` on the
line before its block). The runbook's config changes are checked against the config check of the stack they
name, and its replacement URN against the prod plan."""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.config.pulumi_source import parse_flat_config
from fleet.generators.config_reference import REFERENCE_PATH, render_reference
from fleet.plan.stack_files import wire_value
from tests.conftest import REPO, load_stack_config

DOCS = sorted([REPO / "README.md", REPO / "SCALING.md", REPO / "bench" / "RESULTS.md", *(REPO / "docs").glob("*.md")])
NOT_RUN = re.compile(r"^<!-- not run: (?P<why>.+\S) -->$")
README_MAX_LINES = 450


def blocks(path: Path) -> list[tuple[int, str | None, list[str]]]:
    """(line, the not-run reason or None, the commands) of each ```bash block of PATH."""
    lines, found = path.read_text().splitlines(), []
    for i, line in enumerate(lines):
        if line.strip() == "```bash":
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            reason = NOT_RUN.match(lines[i - 1].strip()) if i else None
            commands = [c.strip() for c in lines[i + 1:end] if c.strip() and not c.strip().startswith("#")]
            found.append((i + 1, reason.group("why") if reason else None, commands))
    return found


RUN = [(path, line, commands) for path in DOCS for line, why, commands in blocks(path) if why is None]


def test_the_configuration_reference_is_generated_from_the_models() -> None:
    assert REFERENCE_PATH.read_text() == render_reference(), (
        "docs/configuration.md is stale: run `python -m fleet.generators.config_reference`")


def test_the_reference_names_every_key_the_config_check_accepts() -> None:
    text = render_reference()
    for key in ("gcp:project", "pilot-fleet:rendezvous.storeSnapshots.everyHours", "pilot-fleet:coldStartMinutes",
                "`spawnParallelism`", "`pilotVersion`", "`maxUnavailable`"):
        assert key in text, key


def test_the_readme_is_an_operators_front_door() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "## Runbook" in text
    for task in ("change a host's target", "canary a daemon version", "roll back", "recover a lost store disk",
                 "rotate (replace) a swarm VM", "scale out", "| verdict | exit |"):
        assert task in text, task
    linked = set(re.findall(r"\]\((docs/[a-z-]+\.md)", text))
    assert linked == {str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")}, "a doc the README omits"


def test_every_shell_block_is_run_or_says_why_not() -> None:
    assert RUN, "no runnable block found: the block parser is broken"
    for path in DOCS:
        for line, why, commands in blocks(path):
            assert commands, f"{path.name}:{line}: an empty block"
            if why is None:
                assert all(c.startswith(".venv/bin/python -m fleet ") for c in commands), (
                    f"{path.name}:{line}: a block this test cannot run needs `<!-- not run: REASON -->` before it")


@pytest.mark.plan
@pytest.mark.parametrize(("path", "line", "commands"), RUN, ids=[f"{p.relative_to(REPO)}:{n}" for p, n, _ in RUN])
def test_the_commands_a_doc_shows_run(path: Path, line: int, commands: list[str], tmp_path: Path) -> None:
    """Each block's commands in order, in one fresh directory (a later one may read what an earlier one wrote)."""
    for command in commands:
        argv = shlex.split(command.split("  #")[0])
        result = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, capture_output=True, text=True,
                                timeout=300, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.returncode == 0, f"{path.name}:{line}: {command}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"


def _runbook() -> list[str]:
    (_, why, commands), = [b for b in blocks(REPO / "README.md") if b[2] and "pulumi up --replace" in " ".join(b[2])]
    assert why
    return commands


def _config_set(command: str) -> tuple[str, Any] | None:
    argv = shlex.split(command.split("&&")[0])
    if argv[:3] != ["pulumi", "config", "set"]:
        return None
    rest = [a for a in argv[3:] if a != "--path"]
    return rest[0], yaml.safe_load(rest[1])


def _apply(config: dict[str, Any], path: str, value: Any) -> None:
    """pulumi config set --path PATH VALUE on a stack's config."""
    key = re.match(r"[^.\[]+", path).group()  # type: ignore[union-attr]
    parts = re.findall(r"[^.\[\]]+", path[len(key):])
    if not parts:
        config[key] = value
        return
    node = config[key]
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[int(parts[-1]) if parts[-1].isdigit() else parts[-1]] = value


@pytest.mark.parametrize("command", [c for c in _runbook() if _config_set(c)])
def test_each_runbook_change_passes_the_config_check_of_its_stack(command: str) -> None:
    path, value = _config_set(command)  # type: ignore[misc]
    stack = "scale" if "swarmPools" in path or "activeZone" in path else "prod"
    config = copy.deepcopy(load_stack_config(stack))
    if "storeFromSnapshot" in path:
        value = "pilot-store-20261201"  # the placeholder SNAPSHOT_NAME, as an operator fills it in
    _apply(config, path, value)
    parse_flat_config({k: wire_value(v) for k, v in config.items()})


def test_the_runbooks_replacement_names_a_resource_of_the_prod_plan(planned: Any) -> None:
    (urn,) = [shlex.split(c)[-1] for c in _runbook() if "--replace" in c]
    assert urn in {r["urn"] for r in planned("prod")["resources"]}
