"""The supervisor against a real rendezvous (built from the pinned public source, testbed/real_rendezvous.py) and real
pilot-daemons from the pinned wheel, on loopback: one host IP, so the registry's limit of 10 new identities a
minute per IP applies to all of them. A registry that comes late, restarts, or loses its store."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fleet.capacity.cold_start import Pacing, vm_cold_start
from fleet.vm_contract import REGISTRATION_LAG_SECONDS
from testbed.real_rendezvous import rendezvous_on_loopback
from testbed.supervisor_harness import Supervised, supervised
from testbed.vm_fleet import wait_for

AGENTS = 12
# The registry's floor for AGENTS fresh identities from one IP: 10 s for the first 10, then 6 s each.
FLOOR = 10.0 + (AGENTS - 10) * 6.0
# Production pacing (rounds of 10, 3 s apart; the registry's bucket), faster ticks for a short test.
PACING = {"spawn_parallelism": 10, "round_delay_seconds": 3.0, "new_registrations_per_minute": 10,
          "new_registration_burst": 10, "tick_seconds": 0.2, "settle_seconds": 10.0, "backoff_initial_seconds": 5.0,
          "backoff_max_seconds": 60.0}


def _registered(box: Supervised) -> int:
    """Agents whose IPC socket exists: pilot-daemon opens it once the registry accepted it."""
    return sum(1 for i in range(box.config["target_agents"])
               if (Path(box.config["run_dir"]) / "agents" / f"{i}.sock").exists())


def test_a_registry_that_comes_60_s_late_is_met_at_its_own_pace(real_daemon: Path, tmp_path: Path,
                                                                short_run_dir: str) -> None:
    with rendezvous_on_loopback(tmp_path, start=False) as rv, \
            supervised(tmp_path, AGENTS, daemon=str(real_daemon), registry=rv.registry, beacon=rv.beacon,
                       run_dir=short_run_dir, **PACING) as box:
        box.start()
        time.sleep(60.0)  # the rendezvous' VM is still booting (building itself, in production)
        assert _registered(box) == 0 and box.status()["running"] == 0  # nobody started against a closed port
        rv.start()
        up = time.monotonic()
        done = wait_for(lambda: _registered(box) == AGENTS, 4 * FLOOR, "the host did not reach its target")
        assert done - up <= 1.1 * FLOOR, (done - up, FLOOR)
        assert rv.refusals() <= AGENTS // 10, rv.refusals()


def test_a_registry_that_restarts_with_its_store_takes_everyone_back_without_refusals(real_daemon: Path,
                                                                                       tmp_path: Path,
                                                                                       short_run_dir: str) -> None:
    with rendezvous_on_loopback(tmp_path) as rv, \
            supervised(tmp_path, AGENTS, daemon=str(real_daemon), registry=rv.registry, beacon=rv.beacon,
                       run_dir=short_run_dir, **PACING) as box:
        box.start()
        wait_for(lambda: _registered(box) == AGENTS, 4 * FLOOR, "the first boot did not reach the target")
        refused = rv.refusals()
        rv.stop()  # a restart of the rendezvous: its store (registry.json) stays
        time.sleep(5.0)
        rv.start()
        wait_for(lambda: box.status()["running"] == AGENTS and _registered(box) == AGENTS
              and _nodes(rv) == AGENTS, 120, "the host did not come back")
        assert rv.refusals() == refused


def _nodes(rv) -> int:  # type: ignore[no-untyped-def]
    import urllib.request

    with urllib.request.urlopen(rv.stats_url, timeout=5) as response:
        return int(json.loads(response.read())["total_nodes"])


def test_a_registry_that_lost_its_store_is_re_paced_not_hammered(real_daemon: Path, tmp_path: Path,
                                                                 short_run_dir: str) -> None:
    """A failover to an empty store while the host restarts its agents: every identity the supervisor knows is new
    to the registry again. The registry takes 10 at once; the supervisor reads the refusals of the rest from their
    output, forgets those identities and starts them again at the registry's pace, not all at once."""
    with rendezvous_on_loopback(tmp_path) as rv, \
            supervised(tmp_path, AGENTS, daemon=str(real_daemon), registry=rv.registry, beacon=rv.beacon,
                       run_dir=short_run_dir, **PACING) as box:
        box.start()
        wait_for(lambda: _registered(box) == AGENTS, 4 * FLOOR, "the first boot did not reach the target")
        box.terminate()
        before = rv.refusals()  # the first boot may have had its own (the supervisor's log of it is gone)
        rv.stop()
        rv.store.unlink()  # the registry comes back empty
        rv.start()
        box.start()
        restarted = time.monotonic()
        wait_for(lambda: _registered(box) == AGENTS and _nodes(rv) == AGENTS, 4 * FLOOR,
              "the host did not get its agents registered again")
        took = time.monotonic() - restarted
        out = box.terminate()
    log = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    noticed = [e for e in log if str(e.get("registry_refused", "")).startswith("daemon start: register:")]
    refused = rv.refusals() - before
    # the registry's burst took 10 and its refill maybe one more; the rest were refused, each refusal was noticed, and
    # none was repeated in a storm
    assert 1 <= refused <= AGENTS - 10 + 2 and len(noticed) == refused, (refused, noticed)
    assert took <= 1.1 * FLOOR + 10.0, took  # the floor, plus the refused daemons' own start-up and exit


def test_a_registry_restart_during_a_scale_up_costs_no_refusal_and_the_plan_holds(real_daemon: Path, tmp_path: Path,
                                                                                   short_run_dir: str) -> None:
    """A host grows from KNOWN agents the registry knows to KNOWN + FRESH, and its rendezvous restarts (with its
    store) in the middle. The known ones start first and take the tokens they find; the fresh ones come at the
    registry's pace. The restarted registry's buckets are new and full, and the known agents heartbeat on without
    registering again (pilot-daemon registers again only after 3 failed heartbeats), so the supervisor's buckets
    stay the more careful: no refusal, and the time is the planner's for the same pacing and known identities."""
    known, fresh = 5, 10
    pacing = {**PACING, "registration_lag_seconds": REGISTRATION_LAG_SECONDS}  # as the boot path writes it
    with rendezvous_on_loopback(tmp_path) as rv:
        with supervised(tmp_path, known, daemon=str(real_daemon), registry=rv.registry, beacon=rv.beacon,
                        run_dir=short_run_dir, **pacing) as box:
            box.start()
            marked = [box.state_dir / "agents" / str(i) / "registered" for i in range(known)]
            wait_for(lambda: all(m.exists() for m in marked), 60, "the first agents did not register")
            box.terminate()  # a new supervisor and a new registry process: both start with full buckets
        rv.stop()
        rv.start()
        with supervised(tmp_path, known + fresh, daemon=str(real_daemon), registry=rv.registry, beacon=rv.beacon,
                        run_dir=short_run_dir, **pacing) as box:
            box.start()
            began = time.monotonic()
            # the restart lands between two of the registry's pace (one fresh identity every 6 s after the
            # supervisor's lag), well after the last registration was saved (a graceful stop flushes the store)
            burst = PACING["new_registrations_per_minute"]  # the known ones and the first fresh ones take it
            wait_for(lambda: _registered(box) >= burst, 60, "the scale-up did not start")
            time.sleep(2.0)
            rv.stop()
            rv.start()
            restarted_with = _nodes(rv)
            done = wait_for(lambda: _registered(box) == known + fresh and _nodes(rv) == known + fresh, 300,
                            "the host did not finish its scale-up")
            took = done - began
            out = box.terminate()
        starts = [e for e in (json.loads(line) for line in out.splitlines() if line.startswith("{"))
                  if e.get("event") == "agent-started"]
        predicted = vm_cold_start(Pacing(fresh, 1, PACING["new_registrations_per_minute"],
                                         PACING["spawn_parallelism"], PACING["round_delay_seconds"], known=known))
    print(f"scale-up {known} -> {known + fresh} with a registry restart: {took:.1f} s, planner {predicted:.1f} s")
    assert restarted_with == PACING["new_registrations_per_minute"]  # the store came back whole
    assert sorted(e["index"] for e in starts if not e["fresh_identity"]) == list(range(known))  # known go first
    assert rv.refusals() == 0
    assert predicted / 1.1 <= took <= predicted * 1.1, (took, predicted)
