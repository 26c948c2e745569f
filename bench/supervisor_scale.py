"""Benchmark: the agent supervisor at 1,000 and 5,000 agents on one host.

Run: .venv/bin/python bench/supervisor_scale.py [--agents 1000 5000]   (needs gcc). The real pilot-daemon does not
fit 5,000 times into a test machine (13 MB each), so agents are bench/standin_daemon.c, compiled here: it binds its
UDP port and IPC socket and logs the registration event, about 100 KB each. The registry is a TCP port on loopback
that accepts connections (the supervisor probes it); it does not rate-limit, as a rendezvous configured for a
fleet's spawn bursts would not.

Pacing is production's shape at a shorter delay (rounds of 20, 0.2 s apart), so the pacing floor is
ceil(N / 20) x 0.2 s. Reported per N, in one run: time to target (every agent registered, i.e. its socket open)
against that floor; at steady state, the supervisor's share of one core over 30 s, its time per tick (from its
status file) and its own resident memory. Exit 1 when time to target exceeds 1.1x the floor or the steady state takes
2% of a core or more at the largest N.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testbed.boot_sandbox import free_tcp_port  # noqa: E402
from testbed.supervisor_harness import SUPERVISOR, free_udp_ports, registry_port  # noqa: E402

PARALLELISM, ROUND_DELAY = 20, 0.2
STEADY_SECONDS = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def status(run_dir: Path) -> dict[str, float]:
    """The supervisor's status file (written every tick): reading it costs the supervisor nothing. Its /metrics
    would: each scrape reads every agent's memory, which is for Prometheus' interval, not once a second."""
    return dict(json.loads((run_dir / "status.json").read_text()))


def run_one(agents: int, standin: Path, base: Path) -> dict[str, float]:
    health = free_tcp_port()
    run_dir = Path(tempfile.mkdtemp(prefix="pf-bench-"))
    with registry_port() as registry:
        config = {"target_agents": agents, "daemon": str(standin), "registry": registry, "beacon": "127.0.0.1:9",
                  "base_udp_port": free_udp_ports(agents), "state_dir": str(base / f"state-{agents}"),
                  "run_dir": str(run_dir), "spawn_parallelism": PARALLELISM, "round_delay_seconds": ROUND_DELAY,
                  "new_registrations_per_minute": 1e9, "new_registration_burst": agents,
                  "health_address": "127.0.0.1", "health_port": health, "health_threshold": 0.95,
                  "rollout_max_unavailable": 0.1, "stop_batch": 500,
                  "stop_batch_delay_seconds": 0.2}
        path = base / f"supervisor-{agents}.json"
        path.write_text(json.dumps(config))
        proc = subprocess.Popen([sys.executable, str(SUPERVISOR), "run", "--config", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        sockets = run_dir / "agents"
        try:
            started = time.monotonic()
            while sum(1 for _ in sockets.glob("*.sock")) < agents if sockets.exists() else True:
                if proc.poll() is not None or time.monotonic() - started > 20 * agents * ROUND_DELAY:
                    said = proc.stderr.read().decode()[-500:] if proc.poll() is not None and proc.stderr else ""
                    raise RuntimeError(f"{agents}: the supervisor did not reach its target {said}".rstrip())
                time.sleep(0.05)
            to_target = time.monotonic() - started
            time.sleep(3.0)  # the last markers written; steady state from here
            cpu0, ticks0, t0 = cpu_seconds(proc.pid), status(run_dir)["ticks"], time.monotonic()
            tick_times = []
            while time.monotonic() - t0 < STEADY_SECONDS:
                time.sleep(1.0)
                tick_times.append(status(run_dir)["tick_seconds"])
            cpu1, ticks1, t1 = cpu_seconds(proc.pid), status(run_dir)["ticks"], time.monotonic()
            result = {"agents": agents, "to_target": to_target,
                      "floor": math.ceil(agents / PARALLELISM) * ROUND_DELAY,
                      "cpu_share": (cpu1 - cpu0) / (t1 - t0), "ticks": ticks1 - ticks0,
                      "tick_ms": 1000 * sorted(tick_times)[len(tick_times) // 2], "rss_mb": rss_mb(proc.pid)}
        finally:
            proc.terminate()
            proc.wait(timeout=120)
            shutil.rmtree(run_dir, ignore_errors=True)
    return result


def compile_standin(base: Path) -> Path:
    """bench/standin_daemon.c built into `base` (the benches' agents; needs gcc)."""
    standin = base / "standin-daemon"
    subprocess.run(["gcc", "-O2", "-o", str(standin), str(REPO / "bench" / "standin_daemon.c")], check=True)
    return standin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[1000, 5000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pilot-fleet-bench-") as tmp:
        base = Path(tmp)
        standin = compile_standin(base)
        results = [run_one(n, standin, base) for n in args.agents]
    print(f"{'agents':>7} {'to target s':>12} {'floor s':>8} {'ratio':>6} {'cpu % core':>11} {'ticks/s':>8} "
          f"{'tick ms':>8} {'rss MB':>7}")
    for r in results:
        print(f"{r['agents']:>7} {r['to_target']:>12.1f} {r['floor']:>8.1f} {r['to_target'] / r['floor']:>6.2f} "
              f"{100 * r['cpu_share']:>11.2f} {r['ticks'] / STEADY_SECONDS:>8.2f} {r['tick_ms']:>8.2f} "
              f"{r['rss_mb']:>7.1f}")
    last = results[-1]
    ok = all(r["to_target"] <= 1.1 * r["floor"] for r in results) and last["cpu_share"] < 0.02
    print(f"within the goals (time to target <= 1.1x the pacing floor; steady state < 2% of a core at "
          f"{last['agents']:,}): {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
