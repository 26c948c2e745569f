"""Benchmark: 1,000 real pilot-daemons reach their target at the pacing floor when the registry's limit does not bind.

Run: .venv/bin/python bench/pacing_floor.py [--agents 1000] [--burst 0]   (about 13 GB of memory: 13 MB each).

The supervisor (the zipapp the VMs run) starts the real pilot-daemon of the fleet's version (from its pinned wheel)
in production's rounds (20 every 3 s) against a rendezvous built from the pinned source with one line changed: its
registry admits 100,000 new identities per source IP a minute (testbed/real_rendezvous.py, a test-only build: the
pinned one admits 10, and every agent here registers from 127.0.0.1). The supervisor is told the same rate
(`new_registrations_per_minute`), and models the registry's bucket as the registry keeps it: as many tokens as its
rate. Reported: time from the supervisor's start until every agent is registered (its IPC socket open), against
the pacing floor ceil(N / 20) x 3 s. `--burst 10` replays the model before issue #20 (a bucket of 10 whatever the
rate: rounds of 10, 2.00x the floor when the issue measured it). Exit 1 past 1.1x the floor.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fleet.facts import pilot  # noqa: E402
from testbed.boot_sandbox import cached_wheel  # noqa: E402
from testbed.real_rendezvous import rendezvous_on_loopback  # noqa: E402
from testbed.supervisor_harness import SUPERVISOR, free_udp_ports  # noqa: E402

PARALLELISM, ROUND_DELAY = 20, 3.0
RATE = 100_000


def daemon(into: Path) -> Path:
    _, wheel = cached_wheel(pilot.PILOT_VERSION)
    target = into / "pilot-daemon"
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read("pilotprotocol/bin/pilot-daemon"))
    target.chmod(0o755)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=0, help="the supervisor's bucket (0: the registry's, its rate)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pf-floor-"))
    run_dir = Path(tempfile.mkdtemp(prefix="pf-", dir="/tmp"))  # short: socket paths must fit sun_path
    try:
        with rendezvous_on_loopback(base, registrations_per_minute=RATE) as rv:
            config = {"target_agents": args.agents, "daemon": str(daemon(base)), "registry": rv.registry,
                      "beacon": rv.beacon, "base_udp_port": free_udp_ports(args.agents),
                      "state_dir": str(base / "state"), "run_dir": str(run_dir),
                      "spawn_parallelism": PARALLELISM, "round_delay_seconds": ROUND_DELAY,
                      "new_registrations_per_minute": RATE, "new_registration_burst": args.burst,
                      "health_threshold": 0.95, "rollout_max_unavailable": 0.1, "stop_batch": 200,
                      "stop_batch_delay_seconds": 0.5}
            path = base / "supervisor.json"
            path.write_text(json.dumps(config))
            proc = subprocess.Popen([sys.executable, str(SUPERVISOR), "run", "--config", str(path)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            sockets = run_dir / "agents"
            floor = math.ceil(args.agents / PARALLELISM) * ROUND_DELAY
            try:
                started = time.monotonic()
                while (sum(1 for _ in sockets.glob("*.sock")) if sockets.exists() else 0) < args.agents:
                    if proc.poll() is not None or time.monotonic() - started > 4 * floor:
                        raise RuntimeError("the supervisor did not reach its target")
                    time.sleep(0.1)
                took = time.monotonic() - started
            finally:
                proc.terminate()
                proc.wait(timeout=900)
            refused = rv.refusals()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    burst = args.burst or RATE
    print(f"| {args.agents:,} real pilot-daemons | bucket {burst:,} | rounds of {PARALLELISM} every {ROUND_DELAY:g} s "
          f"| {took:.0f} s | floor {floor:.0f} s | {took / floor:.2f}x | {refused} refused |")
    return 0 if took <= 1.1 * floor else 1


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("note: not root; the supervisor runs the agents as your user", file=sys.stderr)
    sys.exit(main())
