"""The facts tables (fleet/facts/data, fleet/facts/tables.py): README sends operators there to add a row, and a row
they got wrong is one clear error naming the file, the row and the field, from `pulumi up`, `fleet plan` and the
pack's facts generator alike; never a KeyError, and nothing half-written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.facts import machine_types, pilot_releases, prices, rendezvous_build, rendezvous_capacity, tables, zones
from tests.conftest import REPO

LOADERS: dict[str, Callable[[], Any]] = {
    "machine_types.yaml": machine_types.machine_types, "zones.yaml": zones.zones_by_region,
    "prices.yaml": prices.price_table, "pilot_releases.yaml": pilot_releases.releases,
    "rendezvous_build.yaml": rendezvous_build.build_table,
    "rendezvous_capacity.yaml": rendezvous_capacity.rendezvous_capacity}

SIXTEEN = "e2-standard-16: {vcpus: 16, memory_mb: 65536}"
SHA_1180 = "sha256: " + pilot_releases.releases()["1.18.0"].wheels[0].sha256
DEFAULT_SOURCE = f"default_source: {rendezvous_build.build_table().default_source}"
# (table, text in it, what an operator wrote instead, the error after the file's name)
MISTAKES = [
    ("machine_types.yaml", SIXTEEN, "e2-standard-16: {vcpus: 16}", "machine_types.e2-standard-16.memory_mb is missing"),
    ("machine_types.yaml", SIXTEEN, "e2-standard-16: {vcpus: sixteen, memory_mb: 65536}",
     "machine_types.e2-standard-16.vcpus is 'sixteen', not a positive whole number"),
    ("machine_types.yaml", SIXTEEN, "e2-standard-16: {vcpus: 16, memory_mb: 65536",
     "not valid YAML (line 9: expected ',' or '}', but got ':')"),
    ("machine_types.yaml", SIXTEEN, "e2-standard-16: 16", "machine_types.e2-standard-16 must be a mapping, not 16"),
    ("zones.yaml", "us-west1: [us-west1-a, us-west1-b, us-west1-c]", "us-west1: us-west1-a",
     "us-west1 must be a list of text, not 'us-west1-a'"),
    ("prices.yaml", "e2: {vcpu_hour: 0.021811", "e2: {vcpu_hour: -0.021811",
     "regions.us-central1.e2.vcpu_hour is -0.021811, not a positive number"),
    ("prices.yaml", "pd-ssd: 0.17", "pd-ssd: free", "disks.us-central1.pd-ssd is 'free', not a positive number"),
    ("pilot_releases.yaml", SHA_1180, SHA_1180[:-1],
     f"1.18.0.wheels.x86_64.sha256 is '{SHA_1180[8:-1]}', not a sha256 (64 lower-case hex digits)"),
    ("pilot_releases.yaml", "https://files.pythonhosted.org/packages/31/", "http://files.pythonhosted.org/packages/31/",
     "1.17.0.wheels.x86_64.url is 'http://files.pythonhosted.org/packages/31/f0/3938a291fea64369a7df51694ff00b675b9a8"
     "55f33387a986f2e30c3bcbb/pilotprotocol-1.17.0-py3-none-manylinux_2_34_x86_64.manylinux_2_35_x86_64.whl', not an "
     "https URL"),
    ("rendezvous_build.yaml", DEFAULT_SOURCE, "default_source: main",
     f"default_source is 'main', not one of the sources ({rendezvous_build.build_table().default_source})"),
    ("rendezvous_build.yaml", "    go: 1.27.3", "    go: 1.28.0",
     f"sources.{rendezvous_build.build_table().default_source}.go is '1.28.0', not one of the toolchains (1.27.3)"),
    ("rendezvous_capacity.yaml", "usable_share: 0.5", "usable_share: 5", "usable_share is 5, more than 1"),
    ("rendezvous_capacity.yaml", "registrations_per_second: 2286", "registrations_per_second:",
     "registrations_per_second is missing"),
]


def _clear() -> None:
    for loader in LOADERS.values():
        loader.cache_clear()  # type: ignore[attr-defined]


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the tables the loaders read in this process (the checkout's stay as they are)."""
    copy = tmp_path / "data"
    shutil.copytree(tables.DATA, copy)
    monkeypatch.setattr(tables, "DATA", copy)
    _clear()
    yield copy
    _clear()  # after the monkeypatch is undone too: the next reader reads the checkout's tables again
    monkeypatch.undo()
    _clear()


def _write(data: Path, name: str, text: str, instead: str) -> Path:
    path = data / name
    body = path.read_text()
    assert text in body, f"{name} no longer holds {text!r}: update this case"
    path.write_text(body.replace(text, instead, 1))
    return path


@pytest.mark.parametrize(("name", "text", "instead", "error"), MISTAKES, ids=[m[3][:40] for m in MISTAKES])
def test_a_wrong_row_is_one_error_naming_the_file_row_and_field(data: Path, name: str, text: str, instead: str,
                                                                error: str) -> None:
    path = _write(data, name, text, instead)
    with pytest.raises(tables.FactsTableError) as caught:
        LOADERS[name]()
    assert str(caught.value) == f"{path}: {error}"


def test_the_shipped_tables_read_cleanly(data: Path) -> None:
    for name, loader in LOADERS.items():
        assert loader(), name
    assert machine_types.lookup("e2-standard-16") == machine_types.MachineType("e2-standard-16", 16, 65536)
    assert rendezvous_capacity.rendezvous_capacity().measured_on == "2026-12-07"  # a YAML date, read as text


@pytest.mark.plan
def test_plan_and_the_facts_generator_say_it_in_one_line_and_write_nothing(tmp_path: Path) -> None:
    """A checkout whose machine-type table has a typo: `fleet plan` (which runs the Pulumi program, as `pulumi up`
    does) and the pack's facts generator each print one line naming it and exit 2; the pack's facts stay."""
    for name in ("fleet", "policies"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "__main__.py", "startup"):
        (tmp_path / name).symlink_to(REPO / name)
    _write(tmp_path / "fleet/facts/data", "machine_types.yaml", SIXTEEN, "e2-standard-16: {vcpus: 16}")
    facts = tmp_path / "policies/fleet_policies/facts.py"
    before = facts.read_text()
    wanted = "invalid facts table: fleet/facts/data/machine_types.yaml: machine_types.e2-standard-16.memory_mb is " \
             "missing"
    plan = subprocess.run([sys.executable, "-m", "fleet", "plan"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert plan.returncode == 2 and plan.stderr.splitlines() == [f"error: stack 'prod' of {tmp_path}: {wanted}"]
    generator = subprocess.run([sys.executable, "-m", "fleet.generators.policy_facts"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=120, check=False)
    assert generator.returncode == 2 and generator.stderr.splitlines() == [f"error: {wanted}"]
    assert facts.read_text() == before
