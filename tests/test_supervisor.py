"""The agent supervisor, run for real against the stand-in daemon with fast test figures
(testbed/supervisor_harness.py)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from testbed.boot_sandbox import MetadataServer, free_tcp_port
from testbed.supervisor_harness import FAST, SUPERVISOR, Supervised, max_concurrent, supervised, sv


def _list(box: Supervised) -> dict[int, list[int]]:
    """The supervisor's own one-scan listing: agent index -> pids."""
    return sv.agents.list_agents(sv.config.Config(**box.config))


def test_reaches_target_in_paced_rounds_and_never_exceeds_it(tmp_path: Path) -> None:
    target = 14
    with supervised(tmp_path, target) as box:
        box.start()
        seen = 0
        deadline = time.monotonic() + 30
        while box.status().get("running") != target:  # sample the process listing while it ramps up
            seen = max(seen, sum(len(pids) for pids in _list(box).values()))
            assert time.monotonic() < deadline, box.status()
            time.sleep(0.02)
        time.sleep(1.0)  # a few more ticks at target: nothing more may start
        starts = [e for e in box.events() if e.kind == "start"]
        assert len(starts) == target and {e.index for e in starts} == set(range(target))
        assert seen <= target and max_concurrent(box.events()) == target
        box.wait_for(lambda: all((box.state_dir / "agents" / str(i) / "registered").exists()
                                 for i in range(target)))
        status = box.status()
        assert (status["target_agents"], status["running"], status["restarts"]) == (target, target, 0)
        out = box.terminate()
    # when the supervisor spawned them (its own log; the stand-ins' start-up time under load would blur this)
    times = sorted(float(e["time"]) for e in _supervisor_log(out) if e["event"] == "agent-started")
    assert len(times) == target
    # rounds: a round's starts are logged within a spawn or three of its beginning, and the next round begins one
    # round delay after it; so starts less than half a delay after a round's first belong to it, and no round has
    # more than spawn_parallelism. (Not "no more than 3 within 0.9 of a delay of any start": on a loaded machine a
    # round's last spawn, logged late, fell within that of the next round's, which was on time.)
    rounds: list[list[float]] = []
    for at in times:
        if rounds and at - rounds[-1][0] < FAST["round_delay_seconds"] / 2:
            rounds[-1].append(at)
        else:
            rounds.append([at])
    assert all(len(r) <= FAST["spawn_parallelism"] for r in rounds), rounds
    assert len(rounds) >= -(-target // FAST["spawn_parallelism"]), rounds
    # fresh identities: a burst of 4, then 10 a second at most (the stand-in registry's allowance)
    for i, at in enumerate(times):
        assert i + 1 <= 4 + (at - times[0]) * 10 + 1


def test_exited_agents_restart_with_backoff(tmp_path: Path) -> None:
    # settle 3 s: a refused start on a loaded test machine can take longer than the fast 0.6 s to fail, and an agent
    # that lived past settle_seconds is, by design, no crash loop (its backoff resets)
    with supervised(tmp_path, 4, settle_seconds=3.0) as box:
        (box.state_dir / "standin").mkdir(parents=True)
        (box.state_dir / "standin" / "fail-2").write_text("3")  # three refused registrations in a row
        box.start()
        box.wait_for(lambda: (box.state_dir / "agents" / "2" / "registered").exists())
        assert box.status()["running"] == 4
        refused = [e for e in box.events() if e.kind == "refused" and e.index == 2]
        assert len(refused) == 3
        crashed = _list(box)[1][0]
        subprocess.run(["kill", "-KILL", str(crashed)], check=True)  # a crash: no clean stop
        box.wait_for(lambda: _list(box).get(1, [crashed]) != [crashed] and box.status().get("running") == 4)
        assert box.status()["restarts"] == 4
        log = _supervisor_log(box.terminate())
    # judged on the supervisor's own clock: the delays it chose double (0.4, 0.8, 1.6 s), and it kept each one
    # (the stand-in's start-up time under load would blur gaps measured between its refusals)
    exits = [e for e in log if e["event"] == "agent-exited" and e["index"] == 2]
    starts = [float(e["time"]) for e in log if e["event"] == "agent-started" and e["index"] == 2]
    assert [e["restart_in_seconds"] for e in exits] == [0.4, 0.8, 1.6], exits
    assert all(e.get("registry_refused") for e in exits), exits
    assert len(starts) == 4, starts
    for exited, started in zip(exits, starts[1:], strict=True):
        assert started - float(exited["time"]) >= float(exited["restart_in_seconds"]) - 0.01, (exited, started)


def test_reboot_reuses_identities_without_waiting_for_registration_tokens(tmp_path: Path) -> None:
    with supervised(tmp_path, 9) as box:
        box.start()
        box.wait_for(lambda: all((box.state_dir / "agents" / str(i) / "registered").exists() for i in range(9)))
        box.terminate()
        first = len(box.events())
        # after the "reboot" the registry allows 1 new identity a minute: only known ones can come back quickly
        box.start(new_registrations_per_minute=1, new_registration_burst=1)
        box.wait_for(lambda: len([e for e in box.events()[first:] if e.kind == "start"]) == 9, timeout=10)
        assert box.status()["running"] == 9
        again = [e for e in box.events()[first:] if e.kind == "start"]
        assert len(again) == 9 and all(e.detail.startswith("known") for e in again)
        identities = {(box.state_dir / "agents" / str(i) / "identity.json").read_text() for i in range(9)}
        assert len(identities) == 9


def test_stop_terminates_in_paced_batches(tmp_path: Path) -> None:
    with supervised(tmp_path, 10) as box:
        box.start()
        box.wait_for(lambda: len([e for e in box.events() if e.kind == "start"]) == 10)
        stopping_at = time.time()
        output = box.terminate()
        assert box.proc is not None and box.proc.returncode == 0, output
        stops = sorted(e.at for e in box.events() if e.kind == "stop")  # each agent's own SIGTERM handler
        assert len(stops) == 10 and not _list(box)
        assert stops[0] - stopping_at < 1.0
        assert box.status()["running"] == 0 and '"event": "stopped"' in output
    # the pacing, on the supervisor's own clock (an agent's handler may run late on a loaded machine)
    batches = [e for e in _supervisor_log(output) if e["event"] == "stop-batch"]
    assert [(e["agents"], e["left"]) for e in batches] == [(4, 6), (4, 2), (2, 0)], batches
    assert all(float(b["time"]) - float(a["time"]) >= FAST["stop_batch_delay_seconds"] - 0.01
               for a, b in itertools.pairwise(batches)), batches


def test_a_new_supervisor_counts_agents_it_did_not_start_and_trims_to_target(tmp_path: Path) -> None:
    with supervised(tmp_path, 8) as box:
        box.start()
        box.wait_for(lambda: len([e for e in box.events() if e.kind == "start"]) == 8)
        box.crash()  # the agents outlive their supervisor
        assert len(_list(box)) == 8
        before = len(box.events())
        box.start(target_agents=5)
        box.wait_for(lambda: len(_list(box)) == 5 and box.status().get("running") == 5)
        time.sleep(0.5)
        later = box.events()[before:]
        assert not [e for e in later if e.kind == "start"]  # nothing new: it adopted what was running
        assert sorted(e.index for e in later if e.kind == "stop") == [5, 6, 7]


def test_reap_gives_the_agents_a_killed_supervisor_left_the_paced_stop(tmp_path: Path) -> None:
    """`reap` (pilot-agents.service's ExecStopPost): agents that outlived their supervisor are stopped, in paced
    batches, so the unit never ends with agents running; with none left it does nothing."""
    with supervised(tmp_path, 6) as box:
        box.start()
        box.wait_for(lambda: box.status().get("running") == 6)
        box.crash()  # the agents outlive their supervisor
        assert len(_list(box)) == 6
        reap = [sys.executable, str(SUPERVISOR), "reap", "--config", str(tmp_path / "supervisor.json")]
        done = subprocess.run(reap, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert _list(box) == {}
        assert '"agents": 6, "event": "leftover-agents"' in done.stdout, done.stdout
        again = subprocess.run(reap, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "leftover-agents" not in again.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="another user's process needs root to start")
def test_another_users_process_with_an_agents_command_line_is_not_an_agent(tmp_path: Path) -> None:
    """Without a delegated cgroup (no systemd), an agent is a process of the agents' user (here the supervisor's
    own) with an agent's `-socket`: a spoof by another user is not counted and not stopped."""
    with supervised(tmp_path, 3, scan_seconds=0.5) as box:
        box.start()
        box.wait_for(lambda: box.status().get("running") == 3)
        sock = Path(box.config["run_dir"]) / "agents" / "0.sock"
        # the system's python (another user may not run this checkout's virtualenv)
        spoof = subprocess.Popen(["/usr/bin/python3", "-c", "import time; time.sleep(60)", "-socket", str(sock)],
                                 user="nobody", group="nogroup", extra_groups=[])
        try:
            config = sv.config.Config(**box.config)
            assert spoof.pid in [p for pids in sv.agents.list_agents(config).values() for p in pids]  # argv alone
            ticks = box.status()["ticks"]
            box.wait_for(lambda: box.status()["ticks"] >= ticks + 10)  # a second, two full scans
            assert box.status()["processes"] == 3 and spoof.poll() is None
            assert spoof.pid not in [p for pids in sv.agents.list_agents(config, uids={os.geteuid()}).values()
                                     for p in pids]
        finally:
            spoof.kill()
            spoof.wait()


def test_a_second_supervisor_on_the_same_host_refuses_to_run(tmp_path: Path) -> None:
    with supervised(tmp_path, 2) as box:
        box.start()
        box.wait_for(lambda: box.status().get("running") == 2)
        second = subprocess.run([sys.executable, str(SUPERVISOR), "run", "--config",
                                 str(tmp_path / "supervisor.json")], capture_output=True, text=True, timeout=20)
        assert second.returncode == 1 and "another supervisor holds" in second.stderr
        assert len(_list(box)) == 2


def test_health_endpoint_and_guest_attributes_within_the_write_limit(tmp_path: Path) -> None:
    with MetadataServer({}).serving() as metadata, supervised(
            tmp_path, 6, health_address="127.0.0.1", health_port=free_tcp_port(),
            health_threshold=1.0, healthy_during_rampup=False,
            guest_attributes_url=f"{metadata.url}/instance/guest-attributes/pilot",
            guest_attribute_interval_seconds=1.0, new_registration_burst=1,
            new_registrations_per_minute=120) as box:
        box.start()
        url = f"http://127.0.0.1:{box.config['health_port']}/healthz"
        box.wait_for(lambda: _http_status(url) == 503)
        box.wait_for(lambda: box.status().get("running") == 6)
        box.wait_for(lambda: _http_status(url) == 200)
        box.wait_for(lambda: metadata.guest_attributes.get("pilot/agents-running") == "6", timeout=15)
        assert metadata.guest_attributes["pilot/target-agents"] == "6"
        with urllib.request.urlopen(url.replace("/healthz", "/metrics"), timeout=5) as response:
            samples = dict(line.split() for line in response.read().decode().splitlines()
                           if line and not line.startswith("#"))
        assert samples["pilot_target_agents"] == samples["pilot_agents_running"] == "6"
        assert int(samples["pilot_agents_rss_bytes"]) > 6 * 1_000_000  # six live processes' resident memory
        assert 0 < int(samples["pilot_host_memory_available_bytes"]) < int(samples["pilot_host_memory_total_bytes"])
        writes = [at for at, _ in metadata.guest_attribute_writes]
        for at in writes:  # at most 3 keys per 1 s interval (60 s in production: 3 of the 10 a minute allowed)
            assert sum(1 for t in writes if at <= t < at + 0.95) <= 3


def test_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "supervisor.json"
    path.write_text(json.dumps({"target_agents": 3, "daemon": "x", "colour": "red"}))
    result = subprocess.run([sys.executable, str(SUPERVISOR), "run", "--config", str(path)],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"pilot-supervisor: config {path}: unknown keys ['colour'], missing keys "
        "['base_udp_port', 'beacon', 'health_threshold', 'new_registrations_per_minute', 'registry', "
        "'rollout_max_unavailable', 'round_delay_seconds', 'run_dir', 'spawn_parallelism', 'state_dir']"]


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0



def test_health_is_200_while_a_slow_start_up_is_on_schedule(tmp_path: Path) -> None:
    """A MIG's autohealing must not recreate a VM whose agents are still starting at the registry's pace."""
    with supervised(tmp_path, 40, health_address="127.0.0.1", health_port=free_tcp_port(),
                    new_registrations_per_minute=6, new_registration_burst=2) as box:
        box.start()
        url = f"http://127.0.0.1:{box.config['health_port']}/healthz"
        box.wait_for(lambda: box.status().get("running") == 2)
        assert _http_status(url) == 200  # 2 of 40 running, but 38 more at 6 a minute are still on schedule
        rampup = sv.pacing.rampup_seconds(sv.config.Config(**box.config))
        assert rampup == 38 * 10 * 1.5 + 600


def _supervisor_log(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_no_agent_starts_while_the_registry_is_unreachable(tmp_path: Path) -> None:
    from testbed.supervisor_harness import registry_port

    port = free_tcp_port()  # nothing listens there yet: connection refused, as before the rendezvous is up
    with supervised(tmp_path, 8, registry=f"127.0.0.1:{port}") as box:
        box.start()
        time.sleep(1.5)  # five rounds' worth of time with the registry away
        assert [e for e in box.events() if e.kind == "start"] == []
        with registry_port("127.0.0.1", port):
            came_up = time.time()
            box.wait_for(lambda: len([e for e in box.events() if e.kind == "start"]) == 8)
        out = box.terminate()
    # no token was spent while it was away: a full burst of 4 right away, then the bucket's 10 a second (when the
    # supervisor spawned them, from its own log: the stand-ins' start-up time under load would blur this)
    starts = sorted(float(e["time"]) for e in _supervisor_log(out) if e["event"] == "agent-started")
    assert len(starts) == 8 and starts[0] >= came_up - 0.05
    assert sum(1 for at in starts if at - starts[0] < 0.25) >= 3
    events = [entry["event"] for entry in _supervisor_log(out)]
    assert events.index("registry-unreachable") < events.index("registry-reachable") < events.index("agent-started")


def test_refusals_hold_fresh_starts_back_and_a_forgotten_identity_is_paced_as_fresh(tmp_path: Path) -> None:
    with supervised(tmp_path, 6) as box:
        box.start()
        box.wait_for(lambda: all((box.state_dir / "agents" / str(i) / "registered").exists() for i in range(6)))
        box.terminate()
        # the registry lost its store: it refuses every identity once (it no longer knows them) before it takes it
        for i in range(6):
            (box.state_dir / "standin" / f"fail-{i}").write_text("1")
        first = len(box.events())
        box.start(new_registrations_per_minute=60, new_registration_burst=2)
        box.wait_for(lambda: box.status().get("running") == 6
                     and all((box.state_dir / "agents" / str(i) / "registered").exists() for i in range(6)),
                     timeout=30)
        out = box.terminate()
    events = box.events()[first:]
    refused = [e for e in events if e.kind == "refused"]
    assert len(refused) == 6
    log = _supervisor_log(out)
    assert sum(1 for e in log if e.get("registry_refused") == "daemon start: register: rate limited") == 6
    # after its refusal each identity came back as a fresh one, at the bucket's pace: 2 at once, then 1 a second
    again = [e for e in log if e["event"] == "agent-started"][6:]
    assert len(again) == 6 and all(e["fresh_identity"] for e in again)
    restarts = sorted(e.at for e in events if e.kind == "start")
    assert restarts[-1] - refused[0].at >= 3.0, (restarts, refused[0].at)  # not all at once: paced


def test_the_reaper_leaves_a_probe_to_its_owner_and_still_finds_the_agents() -> None:
    """The main loop reaps with one wait per exit (waitpid on any child). A probe a watcher thread runs meanwhile (a
    new version's -version, a new release's config check) must keep its own exit status: reaped by the loop, Python
    would report 0 for it and a failed check would pass (seen in CI: a broken release was taken up). Twenty probes
    that exit 5, each while the loop reaps as fast as it can and an agent exits too."""
    sup = object.__new__(sv.supervisor.Supervisor)  # the reaper alone: it reads only the agents it started
    for _ in range(20):
        agent = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
        sup.children = {agent.pid: (0, agent)}
        done: dict[str, subprocess.CompletedProcess[str]] = {}
        probe = threading.Thread(target=lambda done=done: done.update(result=sv.probes.run(
            [sys.executable, "-c", "import sys; sys.exit(5)"], timeout=30)))
        probe.start()
        seen: list[tuple[int, int]] = []
        deadline = time.monotonic() + 30
        while (probe.is_alive() or (agent.pid, 3) not in seen) and time.monotonic() < deadline:
            seen += list(sup.exited_children())
        probe.join()
        assert done["result"].returncode == 5
        assert (agent.pid, 3) in seen
