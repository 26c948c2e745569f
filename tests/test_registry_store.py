"""The registry store's guard (startup/pilot_supervisor/store.py) on files: what the rendezvous unit's ExecStartPre
does before every start, and what the generations timer keeps. The whole-fleet test runs both in their units."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.supervisor_harness import SUPERVISOR, sv

store = sv.store


def registry(keys: int, nodes: int | None = None) -> str:
    """A store as the public rendezvous writes it: `keys` public keys known, the first `nodes` of them as nodes."""
    known = [f"key-{i:05d}" for i in range(keys)]
    shown = known[: keys if nodes is None else nodes]
    return json.dumps({"next_node": keys + 1, "next_net": 1,
                       "nodes": {str(i + 1): {"id": i + 1, "public_key": k, "networks": [0]}
                                 for i, k in enumerate(shown)},
                       "networks": {}, "pub_key_idx": {k: i + 1 for i, k in enumerate(known)}})


@pytest.fixture
def disk(tmp_path: Path) -> tuple[Path, Path]:
    """(registry.json, generations/) on a store disk."""
    return tmp_path / "registry.json", tmp_path / "generations"


def test_a_fit_store_starts_and_is_kept_as_a_generation(disk: tuple[Path, Path]) -> None:
    path, generations = disk
    path.write_text(registry(100))
    assert store.check(path, generations) == ""
    assert store.keep(path, generations, 3).startswith("kept registry-")
    assert [store.read_keys(g) for g in store.generations(generations)] == [100]


def test_a_paced_mass_stop_is_no_damage(disk: tuple[Path, Path]) -> None:
    """Every node deregistered: the registry keeps their keys (pub_key_idx), so the store is still fit."""
    path, generations = disk
    path.write_text(registry(100))
    store.keep(path, generations, 3)
    path.write_text(registry(100, nodes=0))
    assert store.check(path, generations) == ""


@pytest.mark.parametrize("damage", ["truncated", "deleted", "emptied", "not a store", "lost keys"])
def test_a_damaged_store_comes_back_from_the_newest_good_generation(disk: tuple[Path, Path], damage: str) -> None:
    path, generations = disk
    path.write_text(registry(90))
    store.keep(path, generations, 3)
    os.utime(store.generations(generations)[0], (1, 1))  # the older one, by name too
    store.generations(generations)[0].rename(generations / "registry-20000101T000000Z.json")
    path.write_text(registry(100))
    store.keep(path, generations, 3)
    text = registry(100)
    damaged = {"truncated": text[: len(text) // 2], "deleted": None, "emptied": "",
               "not a store": "[1, 2]", "lost keys": registry(10)}[damage]
    if damaged is None:
        path.unlink()
    else:
        path.write_text(damaged)
    done = store.check(path, generations)
    assert done.startswith("restored registry-2") and "(100 public keys" in done, done
    assert store.read_keys(path) == 100


def test_no_good_generation_refuses_to_start_an_empty_registry(disk: tuple[Path, Path]) -> None:
    path, generations = disk
    path.write_text(registry(100)[:50])
    with pytest.raises(store.StoreError, match=r"no good generation exists .* not started"):
        store.check(path, generations)
    # a registry existed on this disk (a generation was once kept): a missing store is no first boot
    generations.mkdir()
    (generations / store.EXISTED_MARKER).touch()
    path.unlink()
    with pytest.raises(store.StoreError, match="is missing"):
        store.check(path, generations)


def test_a_new_store_disk_starts_empty(disk: tuple[Path, Path]) -> None:
    path, generations = disk
    assert store.check(path, generations) == ""


def test_starting_fresh_on_purpose_keeps_the_damage_aside(disk: tuple[Path, Path]) -> None:
    path, generations = disk
    path.write_text(registry(100))
    store.keep(path, generations, 3)
    path.write_text("{")
    done = store.check(path, generations, start_fresh=True)
    assert done.startswith("started fresh on purpose") and not path.exists() and not generations.exists()
    aside = sorted(p.name.split("-")[0] for p in path.parent.iterdir())
    assert aside == ["generations.before", "registry.json.damaged"]


def test_keep_refuses_an_implausible_store_and_keeps_the_newest_n(disk: tuple[Path, Path]) -> None:
    path, generations = disk
    for second in range(4):
        path.write_text(registry(100 + second))
        store.keep(path, generations, 3)
        newest = store.generations(generations)[0]
        newest.rename(generations / f"registry-2026010{second}T000000Z.json")
    assert len(store.generations(generations)) == 3
    path.write_text(registry(5))
    assert store.keep(path, generations, 3).startswith("not kept: ")
    path.write_text("{")
    assert store.keep(path, generations, 3).startswith("not kept: ")


def test_the_command_says_why_in_one_line_and_exits_1(disk: tuple[Path, Path]) -> None:
    path, generations = disk
    path.write_text("{")
    result = subprocess.run([sys.executable, str(SUPERVISOR), "store-check", "--store", str(path), "--generations",
                             str(generations)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("registry store: ERROR: ") and len(result.stderr.splitlines()) == 1


def test_a_registry_exists_from_its_first_good_save_not_from_its_first_generation(disk: tuple[Path, Path]) -> None:
    """The first minutes: a store the pre-start check found fit and knowing a key marks the disk, so its loss before
    any generation was kept is refused, never taken for a first boot (the rendezvous would start empty and every
    agent would register again as new)."""
    path, generations = disk
    path.write_text(registry(0))
    assert store.check(path, generations) == "" and not (generations / store.EXISTED_MARKER).exists()  # no key yet
    path.write_text(registry(40))
    assert store.check(path, generations) == ""
    assert (generations / store.EXISTED_MARKER).exists() and store.generations(generations) == []
    path.unlink()
    with pytest.raises(store.StoreError, match="is missing, and no good generation exists"):
        store.check(path, generations)


def test_the_generations_job_keeps_a_changed_store_only_and_marks_the_disk(disk: tuple[Path, Path]) -> None:
    path, generations = disk
    assert store.keep(path, generations, 3).startswith("nothing to keep: no store yet")
    path.write_text(registry(40))
    assert store.keep(path, generations, 3).startswith("kept registry-")
    assert (generations / store.EXISTED_MARKER).exists()
    assert store.keep(path, generations, 3).startswith("unchanged since registry-")
    assert len(store.generations(generations)) == 1
    newest = store.generations(generations)[0]
    newest.rename(generations / "registry-20000101T000000Z.json")  # a minute has passed
    path.write_text(registry(41))
    assert store.keep(path, generations, 3).startswith("kept registry-")
    assert len(store.generations(generations)) == 2
