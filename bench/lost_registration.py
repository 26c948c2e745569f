"""Benchmark (a measurement, once): what a registration the registry acknowledged and then lost costs the agent.

The registry saves its store at most once a second, after it answered: a crash in that second loses registrations
it acknowledged. Here the real rendezvous (pinned source, testbed/real_rendezvous.py) and one real pilot-daemon
(the pinned wheel) under the supervisor, on loopback:

1. the supervisor starts one agent with a fresh identity; the moment its IPC socket appears (pilot-daemon opens it
   once the registry accepted it), the rendezvous is SIGKILLed, and started again on its store; if the store kept
   the registration after all (its save came first), the attempt is repeated with another fresh identity;
2. then, with the registry not knowing the agent: what the daemon does (its JSON log), whether the supervisor
   notices (its status), and when, and as what node, the agent is known to the registry again.

Run: .venv/bin/python bench/lost_registration.py   (about two minutes; loopback only; needs the pinned wheels and
source that `bash scripts/dev.sh test` fetches)
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fleet.facts import pilot  # noqa: E402
from testbed.real_rendezvous import rendezvous_on_loopback  # noqa: E402
from testbed.supervisor_harness import supervised  # noqa: E402
from tests.conftest import extract_daemon  # noqa: E402

PACING = {"spawn_parallelism": 10, "round_delay_seconds": 3.0, "new_registrations_per_minute": 10,
          "tick_seconds": 0.2, "settle_seconds": 10.0, "backoff_initial_seconds": 5.0}
ATTEMPTS = 10
WATCH_SECONDS = 240.0


def stats(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return dict(json.loads(answer.read()))


def daemon_events(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="pilot-fleet-lost-"))
    daemon = extract_daemon(pilot.PILOT_VERSION, base)
    (base / "rv").mkdir()
    with rendezvous_on_loopback(base / "rv") as rv:
        for attempt in range(1, ATTEMPTS + 1):
            state = base / f"attempt-{attempt}"
            state.mkdir()
            run_dir = tempfile.mkdtemp(prefix="pf-")  # short: the daemon's socket path must fit sun_path
            with supervised(state, 1, daemon=str(daemon), registry=rv.registry, beacon=rv.beacon, run_dir=run_dir,
                            **PACING) as box:
                socket_path = Path(run_dir) / "agents" / "0.sock"
                box.start()
                deadline = time.monotonic() + 60
                while not socket_path.exists():
                    if time.monotonic() > deadline:
                        sys.exit("error: the agent never registered")
                    time.sleep(0.005)
                assert rv.proc is not None
                rv.proc.send_signal(signal.SIGKILL)
                acknowledged = time.monotonic()
                rv.proc.wait()
                rv.proc = None
                rv.start()
                restarted = time.monotonic()
                known = stats(rv.stats_url)["total_nodes"]
                expected = attempt - 1  # the earlier attempts' agents were saved (and stopped: deregistered)
                if known != expected:
                    print(f"attempt {attempt}: the store had saved the registration before the kill "
                          f"({known} nodes); again with a fresh identity")
                    box.terminate()
                    continue
                print(f"attempt {attempt}: the registration was acknowledged and lost "
                      f"(killed {1000 * (restarted - acknowledged):.0f} ms before the restart; store: {known} nodes)")
                log = Path(box.config["state_dir"]) / "agents" / "0" / "daemon.log"
                back = None
                while time.monotonic() - restarted < WATCH_SECONDS:
                    if stats(rv.stats_url)["total_nodes"] > expected:
                        back = time.monotonic() - restarted
                        break
                    time.sleep(1.0)
                events = [e for e in daemon_events(log) if e.get("msg") in (
                    "daemon registered", "heartbeat failed", "attempting re-registration", "re-registered",
                    "re-registered with new node ID", "re-registration failed")]
                status = box.status()
                out = box.terminate()
                restarts = [line for line in out.splitlines() if '"agent-exited"' in line]
                print(f"known to the registry again after {back:.1f} s" if back is not None else
                      f"not known to the registry again within {WATCH_SECONDS:.0f} s")
                for event in events:
                    shown = {k: v for k, v in event.items() if k in ("msg", "node_id", "new_node_id", "old_node_id",
                                                                    "consecutive_failures", "error")}
                    print(f"  daemon: {json.dumps(shown)}")
                print(f"  supervisor: running {status.get('running')}, restarts {status.get('restarts')}, "
                      f"agent exits seen {len(restarts)}; registry refusals {rv.refusals()}")
                return 0
    print(f"error: every one of {ATTEMPTS} registrations was saved before the kill", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
