"""The supervisor survives faults (startup/pilot_supervisor/: live.py's watch, faults.py, rolling.py): a metadata
server that answers badly or too fast, a full run directory, a read-only state directory, pacing put right, a live
target above the VM's memory budget, a UDP base moved by fewer ports than the target, an agent deaf to SIGTERM, a
supervisor stopped (SIGSTOP) mid-rollout, a refusal put right, a health port another process holds.

Each case runs the real supervisor (the renderer's zipapp) against the stand-in daemon and the metadata stand-in
with fault modes (testbed/boot_sandbox.py), and asserts: never more agent processes than the target in force
(sampled every 100 ms by the supervisor's own counting rule, `agents.list_agents`), convergence to the final valid
state within 2 round delays + 30 s, at most 2 watch requests a second, and no supervisor exit. The file-system
faults run the supervisor in a private mount namespace of its own (unshare; root), never on this machine's mounts.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from testbed.boot_sandbox import free_tcp_port
from testbed.supervisor_harness import FAST, Supervised, supervised, sv
from tests.test_live_reconcile import TARGET, fake_wheel, live_host, supervisor_log

CONVERGE = 2 * FAST["round_delay_seconds"] + 30
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="private mount namespaces need root")


@contextmanager
def sampled(box: Supervised) -> Iterator[list[int]]:
    """Agent processes every 100 ms, counted as the supervisor counts them."""
    counts: list[int] = []
    done = threading.Event()
    config = sv.config.Config(**box.config)

    def sample() -> None:  # the first at once: a change that is over within 100 ms still has its samples
        while True:
            counts.append(sum(len(pids) for pids in sv.agents.list_agents(config).values()))
            if done.wait(0.1):
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield counts
    finally:
        done.set()
        thread.join(timeout=5)


def processes(box: Supervised) -> int:
    return sum(len(pids) for pids in sv.agents.list_agents(sv.config.Config(**box.config)).values())


def alive(box: Supervised) -> bool:
    return box.proc is not None and box.proc.poll() is None


@pytest.mark.parametrize("fault", ["truncate", "bad-status", "garbage", "huge", "new-etag", "same-etag"])
def test_the_watch_outlives_a_bad_metadata_server_and_never_hammers_it(tmp_path: Path, fault: str) -> None:
    with live_host(tmp_path, {"1.0.0": fake_wheel(tmp_path, "1.0.0")}) as (box, metadata), sampled(box) as counts:
        metadata.fault = fault
        since = len(metadata.watch_requests)
        metadata.change({"pilot-gogc": "101"})  # wakes the held request: the next ones meet the fault
        box.wait_for(lambda: len(metadata.watch_requests) >= since + 4, timeout=30)
        faulty = metadata.watch_requests[since:]
        metadata.fault = ""
        metadata.change({"pilot-target-agents": "11"})
        box.wait_for(lambda: box.status().get("running") == 11 and processes(box) == 11, timeout=CONVERGE)
        assert alive(box)
        log = supervisor_log(box)
    assert max(counts) <= 11
    gaps = [b - a for a, b in itertools.pairwise(faulty)]
    assert gaps and min(gaps) >= 0.45, gaps  # at most 2 watch requests a second, whatever the server does
    events = {e["event"] for e in log}
    said = "metadata-watch-throttled" if fault.endswith("etag") else "metadata-watch-failed"
    assert said in events and "metadata-watch-died" not in events, sorted(events)


def test_a_lowered_round_delay_takes_effect_at_once(tmp_path: Path) -> None:
    """An hour's delay set by mistake, then put right: the next round is due one new delay after the last one."""
    with live_host(tmp_path, {"1.0.0": fake_wheel(tmp_path, "1.0.0")}) as (box, metadata), sampled(box) as counts:
        metadata.change({"pilot-round-delay-seconds": "3600"})
        box.wait_for(lambda: json.loads((tmp_path / "supervisor.json").read_text())["round_delay_seconds"] == 3600)
        metadata.change({"pilot-target-agents": "14"})  # one round of 3 starts, then the hour would hold the rest
        box.wait_for(lambda: processes(box) >= TARGET + 3, timeout=CONVERGE)
        metadata.change({"pilot-round-delay-seconds": "0.3"})
        box.wait_for(lambda: box.status().get("running") == 14 and processes(box) == 14, timeout=CONVERGE)
        assert alive(box)
    assert max(counts) <= 14


def test_a_live_target_above_the_memory_budget_is_refused_with_one_line(tmp_path: Path) -> None:
    with live_host(tmp_path, {"1.0.0": fake_wheel(tmp_path, "1.0.0")}) as (box, metadata), sampled(box) as counts:
        metadata.change({"pilot-max-target-agents": "10"})
        metadata.change({"pilot-target-agents": "41"})
        box.wait_for(lambda: "above" in str(box.status().get("rollout", {}).get("reason", "")), timeout=CONVERGE)
        metadata.change({"pilot-target-agents": "10"})
        box.wait_for(lambda: box.status().get("running") == 10 and processes(box) == 10, timeout=CONVERGE)
        log = supervisor_log(box)
    assert max(counts) <= 10
    refused = [e for e in log if e["event"] == "attributes-refused"]
    assert len(refused) == 1 and "pilot-target-agents=41 is above pilot-max-target-agents=10" in refused[0]["problem"]


@pytest.mark.parametrize("move", [3, -3], ids=["up", "down"])
def test_a_base_port_moved_by_fewer_ports_than_the_target_rolls_without_a_collision(tmp_path: Path,
                                                                                    move: int) -> None:
    with live_host(tmp_path, {"1.0.0": fake_wheel(tmp_path, "1.0.0")}) as (box, metadata), sampled(box) as counts:
        base = int(box.config["base_udp_port"]) + (3 if move < 0 else 0)  # room below for the move down
        if move < 0:
            metadata.change({"pilot-base-udp-port": str(base)})
            box.wait_for(lambda: box.status().get("rollout", {}).get("state") == "done", timeout=CONVERGE)
        metadata.change({"pilot-base-udp-port": str(base + move)})
        box.wait_for(lambda: box.status().get("rollout", {}).get("state") == "done" and json.loads(
            (tmp_path / "supervisor.json").read_text())["base_udp_port"] == base + move, timeout=CONVERGE)
        log = supervisor_log(box)
    assert max(counts) <= TARGET
    assert not [e for e in log if e["event"] == "rollout-failed"], [e for e in log if "rollout" in e["event"]]


def test_an_agent_deaf_to_sigterm_is_killed_after_the_grace_and_a_lowered_target_is_no_restart(
        tmp_path: Path) -> None:
    with live_host(tmp_path, {"1.0.0": fake_wheel(tmp_path, "1.0.0")}) as (box, metadata):
        control = box.state_dir / "standin"
        (control / f"deaf-{TARGET - 1}").write_text("")
        pid = sv.agents.list_agents(sv.config.Config(**box.config))[TARGET - 1][0]
        os.kill(pid, signal.SIGKILL)  # it comes back deaf
        sock = Path(box.config["run_dir"]) / "agents" / f"{TARGET - 1}.sock"  # up (and deaf) once it exists
        box.wait_for(lambda: processes(box) == TARGET and box.status().get("restarts") == 1 and sock.exists(),
                     timeout=CONVERGE)
        with sampled(box) as counts:
            metadata.change({"pilot-target-agents": str(TARGET - 1)})
            box.wait_for(lambda: processes(box) == TARGET - 1, timeout=FAST["stop_grace_seconds"] + 10)
        assert box.status()["restarts"] == 1  # stopped for the lower target: not a restart
        log = supervisor_log(box)
    assert max(counts) <= TARGET  # the old target until the deaf one is killed, never one more
    surplus = [e for e in log if e["event"] == "agent-surplus"]
    assert len(surplus) == 1 and [e["event"] for e in log].count("agent-killed") == 1


def test_a_supervisor_stopped_mid_rollout_does_not_fail_the_batch_for_it(tmp_path: Path) -> None:
    with live_host(tmp_path, {"1.0.0": fake_wheel(tmp_path, "1.0.0")},
                   rollout_registration_seconds=2.0) as (box, metadata), sampled(box) as counts:
        metadata.change({"pilot-gogc": "50"})
        box.wait_for(lambda: box.status().get("rollout", {}).get("state") == "rolling", timeout=CONVERGE)
        assert box.proc is not None
        box.proc.send_signal(signal.SIGSTOP)
        time.sleep(8)  # the stop itself is the fault: longer than a batch's deadline (rounds + 2 s)
        box.proc.send_signal(signal.SIGCONT)
        box.wait_for(lambda: box.status().get("rollout", {}).get("state") == "done", timeout=CONVERGE)
        log = supervisor_log(box)
    assert max(counts) <= TARGET
    events = [e["event"] for e in log]
    assert "supervisor-resumed" in events and "rollout-failed" not in events


def test_a_refusal_put_right_clears_its_status(tmp_path: Path) -> None:
    with live_host(tmp_path, {"1.0.0": fake_wheel(tmp_path, "1.0.0")}) as (box, metadata):
        metadata.change({"pilot-spawn-parallelism": "201"})  # outside its bounds: refused
        box.wait_for(lambda: box.status().get("rollout", {}).get("state") == "refused", timeout=CONVERGE)
        metadata.change({"pilot-spawn-parallelism": "3"})
        box.wait_for(lambda: box.status().get("rollout") == {}, timeout=CONVERGE)


def _health(box: Supervised) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{box.config['health_port']}/status", timeout=5) as answer:
        return dict(json.loads(answer.read()))


def _in_its_namespace(box: Supervised, script: str) -> subprocess.CompletedProcess[str]:
    assert box.proc is not None
    return subprocess.run(["nsenter", "-t", str(box.proc.pid), "-m", "sh", "-c", script], capture_output=True,
                          text=True, check=False)


@contextmanager
def namespaced(tmp_path: Path, run_dir_mb: int = 0) -> Iterator[Supervised]:
    """A supervisor in a private mount namespace; with RUN_DIR_MB, its run directory a tmpfs of that size."""
    with supervised(tmp_path, TARGET, health_address="127.0.0.1", health_port=free_tcp_port()) as box:
        mount = f'mount -t tmpfs -o size={run_dir_mb}m tmpfs "{box.config["run_dir"]}" && ' if run_dir_mb else ""
        Path(box.config["run_dir"]).mkdir(parents=True, exist_ok=True)
        box.prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mount}exec "$@"', "sh"]
        box.start()
        markers = [box.state_dir / "agents" / str(i) / "registered" for i in range(TARGET)]
        box.wait_for(lambda: processes(box) == TARGET and all(m.exists() for m in markers), timeout=CONVERGE)
        yield box


@root_only
def test_a_full_run_directory_is_a_degraded_state_not_an_exit(tmp_path: Path) -> None:
    with namespaced(tmp_path, run_dir_mb=1) as box, sampled(box) as counts:
        fill = f'{box.config["run_dir"]}/fill'
        _in_its_namespace(box, f'cat /dev/zero > "{fill}"')  # ends at ENOSPC
        box.wait_for(lambda: any("status-write" in d for d in _health(box)["degraded"]), timeout=CONVERGE)
        os.kill(sv.agents.list_agents(sv.config.Config(**box.config))[0][0], signal.SIGKILL)
        box.wait_for(lambda: _health(box)["restarts"] == 1 and processes(box) == TARGET, timeout=CONVERGE)
        assert alive(box)
        _in_its_namespace(box, f'rm -f "{fill}"')
        box.wait_for(lambda: _health(box)["degraded"] == [], timeout=CONVERGE)
        log = supervisor_log(box)
    assert max(counts) <= TARGET
    assert {"fault", "fault-cleared"} <= {e["event"] for e in log}


@root_only
def test_a_read_only_state_directory_makes_a_restart_wait_not_the_supervisor_exit(tmp_path: Path) -> None:
    with namespaced(tmp_path) as box, sampled(box) as counts:
        agents = f'{box.config["state_dir"]}/agents'
        ro = _in_its_namespace(box, f'mount --bind "{agents}" "{agents}" && mount -o remount,bind,ro "{agents}"')
        assert ro.returncode == 0, ro.stderr
        os.kill(sv.agents.list_agents(sv.config.Config(**box.config))[0][0], signal.SIGKILL)
        box.wait_for(lambda: any("agent-start" in d for d in _health(box)["degraded"]), timeout=CONVERGE)
        assert alive(box) and processes(box) == TARGET - 1
        _in_its_namespace(box, f'umount "{agents}"')
        box.wait_for(lambda: processes(box) == TARGET and _health(box)["degraded"] == [], timeout=CONVERGE)
        log = supervisor_log(box)
    assert max(counts) <= TARGET
    assert "agent-start-failed" in {e["event"] for e in log}


def test_a_taken_health_port_is_a_fault_not_an_exit(tmp_path: Path) -> None:
    """Another process on the health port: the agents are still brought to the target, the status names the port,
    and the endpoint is served as soon as the port is free (an exit would orphan the agents, and systemd's restart
    would meet the same port)."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        with supervised(tmp_path, TARGET, health_address="127.0.0.1", health_port=port) as box:
            box.start()
            refused = f"health-endpoint: cannot serve on port {port}"
            box.wait_for(lambda: processes(box) == TARGET and any(
                d.startswith(refused) for d in box.status().get("degraded", [])), timeout=CONVERGE)
            holder.close()
            box.wait_for(lambda: box.status()["degraded"] == [], timeout=CONVERGE)
            assert _health(box)["running"] == TARGET
            log = supervisor_log(box)
    faults = [(e["event"], e["fault"]) for e in log if e["event"].startswith("fault")]
    assert faults == [("fault", "health-endpoint"), ("fault-cleared", "health-endpoint")]
