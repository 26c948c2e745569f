"""Benchmark: what the registry store's protections cost at 9,500 identities: the store disk's `dirsync` mount per
snapshot write, and a restore from the last good generation before a start.

Run as root: .venv/bin/python bench/registry_store.py [--identities 9500] [--writes 50]   (needs mkfs.ext4 and
losetup; it mounts two small ext4 images under a temporary directory, nothing else, and unmounts them).

1. The real rendezvous (built from the pinned source, testbed/real_rendezvous.py) takes N fresh identities over
   its own protocol (each from its own loopback address, so its rate limit does not bind), and saves its
   `registry.json`; that file is the payload.
2. Two ext4 file systems on loop devices, one mounted as the startup script mounts the store disk
   (`discard,defaults,dirsync`), one without `dirsync`. On each, the registry's own save is replayed WRITES times:
   write `registry.json.tmp`, fsync it, rename it over `registry.json` (internal/fsutil AtomicWrite). Reported:
   the median time per save on each, and the ratio.
3. The store check (startup/pilot_supervisor/store.py) on the dirsync mount: a truncated `registry.json` with a
   good generation beside it; reported: the time of the check that restores it, and of the check of a fit store
   (what every start pays); and the generations job (every minute): keeping a changed store, and finding one
   unchanged, with the disk the kept generations take.

A loop device's writes land in the page cache of the image file: the figures are the file-system side of `dirsync`
(the extra synchronous directory update), not a persistent disk's latency.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fleet import vm_contract  # noqa: E402
from testbed.real_rendezvous import rendezvous_on_loopback  # noqa: E402
from testbed.registry_client import fresh_key, register  # noqa: E402
from testbed.supervisor_harness import sv  # noqa: E402


def registry_payload(identities: int, base: Path) -> bytes:
    with rendezvous_on_loopback(base) as rv:
        for n in range(1, identities + 1):
            register(rv.registry, fresh_key(), 10000 + n % 50000, source=f"127.1.{n >> 8 & 255}.{n & 255 or 1}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # its save runs once a second
            if rv.store.exists() and sv.store.read_keys(rv.store) >= identities:
                break
            time.sleep(0.2)
        rv.stop()
        return rv.store.read_bytes()


def mounted(base: Path, name: str, options: str) -> Path:
    image, point = base / f"{name}.img", base / name
    with open(image, "wb") as handle:
        handle.truncate(256 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    point.mkdir()
    subprocess.run(["mount", "-o", f"loop,{options}", str(image), str(point)], check=True)
    return point


def replay_saves(directory: Path, payload: bytes, writes: int) -> float:
    """The registry's AtomicWrite, WRITES times; the median seconds per save."""
    target, tmp = directory / "registry.json", directory / "registry.json.tmp"
    times = []
    for _ in range(writes):
        began = time.perf_counter()
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(target)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=9500)
    parser.add_argument("--writes", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("error: needs root (loop mounts)")
    base = Path(tempfile.mkdtemp(prefix="pilot-fleet-store-bench-"))
    points: list[Path] = []
    try:
        payload = registry_payload(args.identities, base)
        durable = mounted(base, "dirsync", "discard,defaults,dirsync")
        points.append(durable)
        plain = mounted(base, "plain", "discard,defaults")
        points.append(plain)
        with_dirsync, without = (replay_saves(durable, payload, args.writes),
                                 replay_saves(plain, payload, args.writes))
        store, generations = durable / "registry.json", durable / "generations"
        keep = vm_contract.REGISTRY_GENERATIONS
        began = time.perf_counter()
        kept = sv.store.keep(store, generations, keep)
        keep_changed = time.perf_counter() - began
        began = time.perf_counter()
        unchanged = sv.store.keep(store, generations, keep)
        keep_unchanged = time.perf_counter() - began
        assert kept.startswith("kept ") and unchanged.startswith("unchanged "), (kept, unchanged)
        began = time.perf_counter()
        assert sv.store.check(store, generations) == ""
        fit = time.perf_counter() - began
        store.write_bytes(payload[: len(payload) // 2])
        began = time.perf_counter()
        done = sv.store.check(store, generations)
        restore = time.perf_counter() - began
        assert done.startswith("restored ") and sv.store.read_keys(store) >= args.identities, done
    finally:
        for point in points:
            subprocess.run(["umount", str(point)], check=False)
        shutil.rmtree(base, ignore_errors=True)
    print(f"registry.json of {args.identities:,} identities: {len(payload) / 1e6:.2f} MB")
    print(f"one save (write, fsync, rename), median of {args.writes}: {1000 * with_dirsync:.2f} ms with dirsync, "
          f"{1000 * without:.2f} ms without: {with_dirsync / without:.2f}x")
    print(f"store check before a start: {1000 * fit:.1f} ms for a fit store, {1000 * restore:.1f} ms to restore a "
          "truncated one from its generation")
    every = vm_contract.REGISTRY_GENERATION_SECONDS
    print(f"generations job (every {every} s): {1000 * keep_changed:.1f} ms to keep a changed store, "
          f"{1000 * keep_unchanged:.1f} ms to find it unchanged; {vm_contract.REGISTRY_GENERATIONS} kept take "
          f"{vm_contract.REGISTRY_GENERATIONS * len(payload) / 1e6:.0f} MB of the store disk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
