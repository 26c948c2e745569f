"""The registry's store never starts empty: the rendezvous unit's ExecStartPre checks `registry.json` before every
start, a timer keeps its last good generations, and a damaged or missing store comes back from the newest one.

The public rendezvous carries on with an empty registry when it cannot load its store ("registry starting fresh")
and its next save, within a second, overwrites the damaged file: every identity would have to register as new, at
the registry's rate limit (hours for a fleet). So the check runs before it can:

- the store parses and knows at least MIN_KEPT of the public keys the newest good generation knew (keys, not
  nodes: a paced mass stop deregisters every node, but the registry keeps their keys in `pub_key_idx`): it starts;
- else, when a good generation exists: that generation is restored (one rename, synced), and it starts;
- else, when the store is damaged or missing after a registry existed (a fit store that knew a key was ever seen
  here, by this check or by the generations job, or a damaged file is there): it does not start, and says why,
  unless the operator asked for a fresh start (the rendezvous' start_fresh attribute), which moves the damaged store
  aside;
- a store disk that never held a registry (the first boot) starts empty, as it must.

The generations job runs every minute and keeps the store when it changed since the newest generation (and is fit):
the first one within a minute of the first registrations, and during churn one a minute, so a restore loses at
most the last minute's registrations, whose agents then register again as new identities."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

# a store that knows fewer keys than this share of the newest good generation's is damaged, not a registry
MIN_KEPT = 0.9
GENERATION_PREFIX = "registry-"
# written into the generations directory once a registry existed on this disk: its loss is never a first boot
EXISTED_MARKER = ".registry-existed"


class StoreError(Exception):
    """The rendezvous must not start: the store is damaged and nothing good can replace it."""


@dataclass(frozen=True)
class Snapshot:
    path: Path
    keys: int


def read_keys(path: Path) -> int:
    """How many public keys the registry store at PATH knows; raises ValueError (with why) if it is no store."""
    return len(public_keys(path))


def public_keys(path: Path) -> set[str]:
    """The public keys the registry store at PATH knows (its nodes' and `pub_key_idx`, which keeps those of
    deregistered nodes); raises ValueError (with why) if it is no store."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"does not parse ({str(exc)[:120]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("nodes", {}), dict):
        raise ValueError("is not a registry store (no object of nodes)")
    keys = set(data.get("pub_key_idx") or {})
    for node in (data.get("nodes") or {}).values():
        if isinstance(node, dict) and isinstance(node.get("public_key"), str):
            keys.add(node["public_key"])
    return keys


def generations(directory: Path) -> list[Path]:
    """Kept generations, newest first (their names sort by time)."""
    if not directory.is_dir():
        return []
    return sorted(directory.glob(f"{GENERATION_PREFIX}*.json"), reverse=True)


def newest_good(directory: Path) -> Snapshot | None:
    """The newest generation that still parses (each is checked again before it is trusted)."""
    for path in generations(directory):
        try:
            return Snapshot(path, read_keys(path))
        except ValueError:
            continue
    return None


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_copy(source: Path, target: Path, owner: str = "") -> None:
    """Copy SOURCE over TARGET so that a crash at any moment leaves one or the other whole: a synced temporary
    file, one rename, the directory synced (what the public rendezvous' own AtomicWrite leaves out)."""
    tmp = target.with_name(f".{target.name}.restore")
    shutil.copyfile(source, tmp)
    if owner:
        shutil.chown(tmp, owner, owner)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    tmp.replace(target)
    _sync_directory(target.parent)


def judged(store: Path, good: Snapshot | None) -> tuple[int, str]:
    """(public keys the store knows, why it is unfit: "" when it is fit). Unfit: it does not parse, or it knows
    fewer than MIN_KEPT of the keys the newest good generation GOOD knew. The same judgement before a start and
    before a generation is kept."""
    try:
        keys = read_keys(store)
    except ValueError as exc:
        return 0, f"{store} {'is missing' if not store.exists() else exc}"
    if good is not None and keys < MIN_KEPT * good.keys:
        return keys, f"{store} knows {keys} public keys, the last good generation {good.path.name} {good.keys}"
    return keys, ""


def existed(directory: Path, owner: str = "") -> None:
    """Mark DIRECTORY's disk as one that held a registry: from then on a missing or damaged store is never taken for
    a first boot. Written once (the job that keeps generations runs as the rendezvous' user: it owns the marker)."""
    marker = directory / EXISTED_MARKER
    if marker.exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    marker.touch()
    if owner:
        shutil.chown(marker, owner, owner)
        shutil.chown(directory, owner, owner)


def check(store: Path, directory: Path, start_fresh: bool = False, owner: str = "") -> str:
    """Before the rendezvous starts: "" when the store is fit, else what was done (a restore, a fresh start).
    Raises StoreError when it must not start."""
    good = newest_good(directory)
    keys, problem = judged(store, good)
    if not problem:
        if keys:  # a registry exists here from its first good save, not from its first generation
            existed(directory, owner)
        return ""
    if not store.exists() and not (directory / EXISTED_MARKER).exists() and good is None:
        return ""  # a new store disk: the registry's first start
    if start_fresh:
        # the damaged store and the old generations are kept aside: the new registry is judged on its own
        stamp = int(time.time())
        if store.exists():
            store.replace(store.with_name(f"{store.name}.damaged-{stamp}"))
        if directory.exists():
            directory.replace(directory.with_name(f"{directory.name}.before-fresh-{stamp}"))
        return f"started fresh on purpose (start_fresh): {problem}; the damaged store and the " \
               "generations were kept aside"
    if good is None:
        raise StoreError(f"{problem}, and no good generation exists in {directory}: the rendezvous is not started, "
                         "as it would start with an empty registry and overwrite the store. Put a good registry.json "
                         "back, or start fresh on purpose with the stack's rendezvous.startFresh")
    durable_copy(good.path, store, owner)
    age = int(time.time() - good.path.stat().st_mtime)
    return f"restored {good.path.name} ({good.keys} public keys, {age} s old): {problem}"


def keep(store: Path, directory: Path, count: int) -> str:
    """The periodic job: keep the store as a new generation if it is fit (checked as before a start) and changed
    since the newest generation, and the newest COUNT generations only. Returns what it did."""
    good = newest_good(directory)
    if not store.exists() and good is None:
        return "nothing to keep: no store yet (the registry has not saved)"
    keys, problem = judged(store, good)
    if problem:
        return f"not kept: {problem}"
    if keys:
        existed(directory)
    if good is not None and _same(store, good.path):
        return f"unchanged since {good.path.name} ({keys} public keys)"
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{GENERATION_PREFIX}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    durable_copy(store, directory / name)
    for old in generations(directory)[count:]:
        old.unlink(missing_ok=True)
    return f"kept {name} ({keys} public keys)"


def _same(one: Path, other: Path) -> bool:
    try:
        return one.stat().st_size == other.stat().st_size and one.read_bytes() == other.read_bytes()
    except OSError:
        return False
