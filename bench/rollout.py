"""Benchmark: a live daemon-version rollout on one host, at 20 and 1,000 agents, against its pacing floor.

Run: .venv/bin/python bench/rollout.py [--agents 20 1000]   (needs gcc). The supervisor is the real one, rendered
as the VMs run it, watching a metadata stand-in on loopback (real HTTP, ETags, wait_for_change). The agents are
bench/standin_daemon.c (1,000 real pilot-daemons do not fit a test machine; the real 1.17.0 -> 1.18.0 rollout runs
in tests/test_fleet_boot.py), packed into two fake pilotprotocol wheels, versions 1.0.0 and 1.1.0, which the
supervisor downloads, sha256-checks and contract-checks as it would PyPI's. The registry is a TCP port that accepts
connections and does not rate-limit (re-registrations of known identities are not rate-limited by the real one).

Pacing is production's shape at a shorter delay (rounds of 20, 0.2 s apart) with production's rollout share (0.1 of
the target per batch). Each batch must be back and registered before the next starts, so the floor is
ceil(N / batch) batches x ceil(batch / 20) rounds x 0.2 s. Reported per N, in one run: the time from the metadata
change to the supervisor's `rollout: done`, its ratio to the floor, and the most agents down at once (sampled every
10 ms). Exit 1 when a rollout takes more than 1.5x its floor plus 0.25 s per batch (the stop and the registration of
each batch take real time the floor does not count), or ever has more than one batch down.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.supervisor_scale import compile_standin  # noqa: E402
from testbed.boot_sandbox import MIRROR_PATH, MetadataServer, mirror_path  # noqa: E402
from testbed.supervisor_harness import SUPERVISOR, free_udp_ports, registry_port, sv  # noqa: E402

PARALLELISM, ROUND_DELAY, SHARE = 20, 0.2, 0.1
FLAGS = ["-telemetry-url", "-motd-feed-url", "-no-skillinject"]
OLD, NEW = "1.0.0", "1.1.0"


def wheel(base: Path, standin: Path, version: str) -> tuple[str, Path, str]:
    """(url, file, sha256) of a fake pilotprotocol wheel holding the stand-in as pilotprotocol/bin/pilot-daemon."""
    path = base / f"pilotprotocol-{version}-bench.whl"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("pilotprotocol/bin/pilot-daemon")
        info.external_attr = 0o755 << 16
        archive.writestr(info, standin.read_bytes())
    return f"https://files.example.test/{path.name}", path, hashlib.sha256(path.read_bytes()).hexdigest()


def attributes(version: str, url: str, sha256: str, agents: int, registry: str, port: int) -> dict[str, str]:
    release = {"version": version, "flags": FLAGS, "wheels": {os.uname().machine: {"url": url, "sha256": sha256}}}
    return {"pilot-role": "swarm", "pilot-version": version, "pilot-daemon-release": json.dumps(release),
            "pilot-target-agents": str(agents), "pilot-registry": registry, "pilot-beacon": "127.0.0.1:9",
            "pilot-base-udp-port": str(port), "pilot-spawn-parallelism": str(PARALLELISM),
            "pilot-round-delay-seconds": str(ROUND_DELAY), "pilot-new-registrations-per-minute": "1000000",
            "pilot-rollout-max-unavailable": str(SHARE)}


def run_one(agents: int, standin: Path, base: Path) -> dict[str, float]:
    home = base / f"host-{agents}"
    home.mkdir()
    run_dir = Path(tempfile.mkdtemp(prefix="pf-roll-"))
    wheels = {v: wheel(home, standin, v) for v in (OLD, NEW)}
    files = {mirror_path(url): path for url, path, _ in wheels.values()}
    with registry_port() as registry, MetadataServer({}, files=files).serving() as metadata:
        os.environ["PILOT_DOWNLOAD_MIRROR"] = metadata.base_url + MIRROR_PATH
        port = free_udp_ports(agents)
        url, _, sha = wheels[OLD]
        metadata.change(attributes(OLD, url, sha, agents, registry, port))
        install = str(home / "opt")
        daemon = sv.install.install_daemon(install, OLD, url, sha, FLAGS)
        config = {**sv.attributes.settings(metadata.attributes), "daemon": str(daemon),
                  "state_dir": str(home / "state"), "run_dir": str(run_dir), "install_dir": install,
                  "metadata_url": metadata.url, "new_registration_burst": agents, "stop_batch": 500,
                  "stop_batch_delay_seconds": 0.2, "health_threshold": 0.95}
        path = home / "supervisor.json"
        path.write_text(json.dumps(config))
        proc = subprocess.Popen([sys.executable, str(SUPERVISOR), "run", "--config", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sockets = run_dir / "agents"
        status_file = run_dir / "status.json"

        def registered() -> int:
            return sum(1 for _ in sockets.glob("*.sock")) if sockets.exists() else 0

        def status() -> dict[str, object]:
            try:
                return dict(json.loads(status_file.read_text()))
            except (OSError, ValueError):
                return {}

        try:
            deadline = time.monotonic() + 20 * agents * ROUND_DELAY + 30
            while registered() < agents:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{agents}: the supervisor did not reach its target")
                time.sleep(0.05)
            least = [agents]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    least[0] = min(least[0], registered())
                    done.wait(0.01)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            url, _, sha = wheels[NEW]
            began = time.monotonic()
            metadata.change(attributes(NEW, url, sha, agents, registry, port))
            while status().get("rollout", {}).get("state") != "done":  # type: ignore[union-attr]
                if proc.poll() is not None or time.monotonic() - began > 600:
                    raise RuntimeError(f"{agents}: the rollout did not finish: {status()}")
                time.sleep(0.01)
            took = time.monotonic() - began
            done.set()
            sampler.join()
            batch = max(1, math.floor(agents * SHARE))
            batches = math.ceil(agents / batch)
            return {"agents": agents, "took": took, "batch": batch, "batches": batches,
                    "floor": batches * math.ceil(batch / PARALLELISM) * ROUND_DELAY,
                    "most_down": agents - least[0], "version": str(status().get("version"))}
        finally:
            proc.terminate()
            proc.wait(timeout=120)
            shutil.rmtree(run_dir, ignore_errors=True)
            del os.environ["PILOT_DOWNLOAD_MIRROR"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[20, 1000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pilot-fleet-bench-") as tmp:
        base = Path(tmp)
        standin = compile_standin(base)
        results = [run_one(n, standin, base) for n in args.agents]
    print(f"live rollout {OLD} -> {NEW}: batches of {SHARE:g} of the target, rounds of {PARALLELISM} every "
          f"{ROUND_DELAY:g} s")
    print(f"{'agents':>7} {'batch':>6} {'rollout s':>10} {'floor s':>8} {'ratio':>6} {'s/batch':>8} {'most down':>10}")
    ok = True
    for r in results:
        print(f"{r['agents']:>7} {r['batch']:>6} {r['took']:>10.2f} {r['floor']:>8.2f} {r['took'] / r['floor']:>6.2f} "
              f"{r['took'] / r['batches']:>8.2f} {r['most_down']:>10}")
        ok = ok and r["version"] == NEW and r["most_down"] <= r["batch"] \
            and r["took"] <= 1.5 * r["floor"] + 0.25 * r["batches"]
    print(f"within the bounds (every agent on {NEW}; at most one batch down; rollout <= 1.5x floor + 0.25 s per "
          f"batch): {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
