"""Shared fixtures: plans of the shipped stacks (run once per session) and throwaway copies of the program."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.facts import pilot
from testbed.warm_cli import WarmCli

REPO = Path(__file__).resolve().parent.parent
PROGRAM_FILES = ("Pulumi.yaml", "__main__.py", "fleet", "startup")
# Files that wait on real clocks (the real registry's rate limit, a registry 60 s late, rendezvous builds, servers
# that answer a byte a second), longest first: with a file per worker at a time (--dist loadfile,
# --no-loadscope-reorder in pyproject.toml) they start at once, and the suite takes about as long as the longest of
# them, not that one started last. (test_verify.py is the longest of the fast layer: last in the alphabet, it
# started last there and set the fast layer's time.)
WHOLE_FLEET_FILE = "test_fleet_boot.py"
LONG_SYSTEM_FILES = (WHOLE_FLEET_FILE, "test_registry_aware.py", "test_registry_kills.py",
                     "test_supervisor_faults.py", "test_script_runner.py", "test_rendezvous_e2e.py")
LONG_FILES = (*LONG_SYSTEM_FILES, "test_verify.py")


# The layers (markers registered in pyproject.toml). `system`: real processes, real daemons, the real rendezvous,
# network namespaces, system containers. `plan`: whole plans of the program under the mock engine, and the policy
# pack's own process. `fast`: everything else, the unit tests of every module (`scripts/dev.sh test --fast`).
SYSTEM_FILES = (*LONG_SYSTEM_FILES, "test_boot_path.py", "test_supervisor.py", "test_live_reconcile.py",
                "test_registration_addresses.py",
                "test_daemon_contract.py")
PLAN_FILES = ("test_plan_cli.py", "test_plan_prod.py", "test_policy_pack.py", "test_warm_cli.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SYSTEM_FILES:
            item.add_marker(pytest.mark.system)
        elif item.path.name in PLAN_FILES or "planned" in getattr(item, "fixturenames", ()) or \
                item.get_closest_marker("plan"):
            item.add_marker(pytest.mark.plan)
        else:
            item.add_marker(pytest.mark.fast)
    items.sort(key=lambda item: LONG_FILES.index(item.path.name) if item.path.name in LONG_FILES else len(LONG_FILES))


_warm: list[WarmCli] = []  # this worker's warm CLI, started at its first command


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """--dist loadfile, except that no file waits behind the whole-fleet file. xdist queues a further file on a
    worker whose files have two tests or fewer left (a worker runs a test only once it knows the next one, or that
    there is none), so a file waited the whole-fleet test's minutes behind it while other workers were idle. Its
    worker is told at once that nothing follows: it runs the whole-fleet test, then stops."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class NothingBehindTheFleet(LoadFileScheduling):
        def _reschedule(self, node: Any) -> None:
            if any(scope.endswith(WHOLE_FLEET_FILE) for scope in self.assigned_work.get(node, {})):
                if not node.shutting_down:
                    node.shutdown()
                return
            super()._reschedule(node)

    return NothingBehindTheFleet(config, log)


def run_fleet(*args: str, timeout: float = 120, stdin: str = "",
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m fleet ARGS` in the checkout, with STDIN and this process' environment with ENV over it, through this
    worker's warm CLI (testbed/warm_cli.py: a fork of a process that did the imports; tests/test_warm_cli.py holds
    it to a cold command)."""
    if not _warm:
        _warm.append(WarmCli.start())
    return _warm[0].run(list(args), REPO, timeout, stdin, env)


def pytest_sessionfinish() -> None:
    while _warm:
        _warm.pop().close()


@pytest.fixture(scope="session")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    cache: dict[str, dict[str, Any]] = {}

    def plan(stack: str) -> dict[str, Any]:
        if stack not in cache:
            out = tmp_path_factory.mktemp("plan") / f"{stack}.json"
            result = run_fleet("plan", "--stack", stack, "--json", str(out))
            assert result.returncode == 0, result.stderr
            cache[stack] = json.loads(out.read_text())
        return cache[stack]

    return plan


def load_stack_config(stack: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]


@pytest.fixture
def program_with_stack(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    """A copy of this program (linked, not copied) with one extra stack file, Pulumi.test.yaml."""

    def make(config: dict[str, Any]) -> Path:
        for name in PROGRAM_FILES:
            (tmp_path / name).symlink_to(REPO / name)
        (tmp_path / "Pulumi.test.yaml").write_text(yaml.safe_dump({"config": config}))
        return tmp_path

    return make


@pytest.fixture(scope="session")
def real_daemon(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real pilot-daemon binary of the fleet's version, from its pinned wheel (.cache/wheels), sha256-checked."""
    return extract_daemon(pilot.PILOT_VERSION, tmp_path_factory.mktemp("pilot"))


def extract_daemon(version: str, into: Path) -> Path:
    """pilot-daemon VERSION from its wheel in .cache/wheels, the wheel's sha256 checked against the release table."""
    from testbed.boot_sandbox import cached_wheel

    wheel, path = cached_wheel(version)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == wheel.sha256, "the pinned sha256 does not match PyPI's"
    target = into / "pilot-daemon"
    with zipfile.ZipFile(path) as archive:
        target.write_bytes(archive.read("pilotprotocol/bin/pilot-daemon"))
    target.chmod(0o755)
    return target


@pytest.fixture
def short_run_dir() -> Iterator[str]:
    """A run directory with a short path: the real daemon's IPC socket path (and its temporary sibling) must fit
    sun_path, which pytest's (and its workers') temporary paths can exceed."""
    path = tempfile.mkdtemp(prefix="pf-run-")
    yield path
    shutil.rmtree(path, ignore_errors=True)
