"""Day two on one host: the supervisor follows its instance attributes live (target, version, GOGC), without a
restart, never above the target, and refuses or rolls back what cannot run.

The metadata server is the loopback stand-in (real HTTP, ETags and wait_for_change as Compute Engine answers them).
The daemons are the stand-in daemon inside fake pilotprotocol wheels (a wrapper that answers -version and runs
testbed/standin_daemon.py): the point here is the supervisor's rollout logic, at test speed. The same rollout with
the real 1.17.0 and 1.18.0 wheels under real systemd is in tests/test_fleet_boot.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import ssl
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from fleet.components.registry_tls import fingerprint
from fleet.plan import tls_standin
from testbed.boot_sandbox import MIRROR_PATH, MetadataServer, free_tcp_port, mirror_path
from testbed.supervisor_harness import STANDIN, Event, Supervised, supervised, sv

FLAGS = ["-telemetry-url", "-motd-feed-url", "-no-skillinject"]
TARGET = 8


def fake_wheel(base: Path, version: str, broken: bool = False) -> tuple[Path, str]:
    """A pilotprotocol wheel whose pilot-daemon says VERSION and runs the stand-in (or, broken, exits at once as a
    daemon the registry refused does)."""
    run = ('echo \'{"msg":"daemon start: register: registry: request failed"}\'; exit 1' if broken else
           f'PILOT_STANDIN_VERSION={version} exec {sys.executable} {STANDIN} "$@"')
    script = (f'#!/bin/sh\nif [ "$1" = -version ]; then echo {version}; exit 0; fi\n'
              f'if [ "$1" = -h ]; then exec {sys.executable} {STANDIN} -h; fi\n{run}\n')
    path = base / f"pilotprotocol-{version}{'-broken' if broken else ''}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("pilotprotocol/bin/pilot-daemon")
        info.external_attr = 0o755 << 16
        archive.writestr(info, script)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def release(version: str, wheel: tuple[Path, str]) -> str:
    url = f"https://files.example.test/{wheel[0].name}"
    return json.dumps({"version": version, "flags": FLAGS, "wheels": {os.uname().machine: {
        "url": url, "sha256": wheel[1]}}})


def attributes(registry: str, base_port: int, version: str, wheel: tuple[Path, str], **extra: str) -> dict[str, str]:
    return {"pilot-role": "swarm", "pilot-version": version, "pilot-daemon-release": release(version, wheel),
            "pilot-target-agents": str(TARGET), "pilot-registry": registry, "pilot-beacon": "127.0.0.1:9",
            "pilot-base-udp-port": str(base_port), "pilot-spawn-parallelism": "3",
            "pilot-round-delay-seconds": "0.3", "pilot-new-registrations-per-minute": "600", "pilot-gogc": "100",
            "pilot-rollout-max-unavailable": "0.25", **extra}


@contextmanager
def live_host(tmp_path: Path, versions: dict[str, tuple[Path, str]],
              **overrides: Any) -> Iterator[tuple[Supervised, MetadataServer]]:
    """A supervisor on version 1.0.0 at TARGET agents, watching a metadata stand-in that serves every fake wheel."""
    files = {mirror_path(f"https://files.example.test/{path.name}"): path for path, _ in versions.values()}
    with MetadataServer({}, files=files).serving() as metadata, supervised(tmp_path, TARGET, **overrides) as box:
        os.environ["PILOT_DOWNLOAD_MIRROR"] = metadata.base_url + MIRROR_PATH  # inherited by the supervisor
        try:
            # its own health port on loopback: hosts of parallel tests must not meet on the default 8081
            metadata.change(attributes(box.config["registry"], box.config["base_udp_port"], "1.0.0",
                                       versions["1.0.0"], **{"pilot-health-port": str(free_tcp_port())}))
            install = str(tmp_path / "opt")
            wanted = sv.attributes.settings(metadata.attributes)
            daemon = sv.install.install_daemon(install, "1.0.0", wanted["wheel_url"], wanted["wheel_sha256"],
                                                      FLAGS)
            box.config.update({k: v for k, v in wanted.items()}, daemon=str(daemon), install_dir=install,
                              metadata_url=metadata.url, guest_attributes_url=f"{metadata.url}/instance/"
                              "guest-attributes/pilot", guest_attribute_interval_seconds=0.2,
                              health_address="127.0.0.1")
            box.start()
            # every agent registered and its own start event written (it writes it just after its socket)
            box.wait_for(lambda: registered(box) == TARGET and len(alive(box)) == TARGET)
            yield box, metadata
        finally:
            del os.environ["PILOT_DOWNLOAD_MIRROR"]


def registered(box: Supervised) -> int:
    sockets = Path(box.config["run_dir"]) / "agents"
    return sum(1 for i in range(TARGET * 2) if (sockets / f"{i}.sock").exists())


def alive(box: Supervised) -> dict[int, str]:
    """Agent index -> version of its latest start, for agents not stopped since (from the stand-in's events)."""
    out: dict[int, str] = {}
    for event in box.events():
        if event.kind == "start":
            out[event.index] = event.detail.split()[-1]
        elif event.kind == "stop":
            out.pop(event.index, None)
    return out


def most_unavailable(events: list[Event], target: int) -> int:
    """The most agents (of `target`, all up before the first event) down at once over these events."""
    up = dict.fromkeys(range(target), True)
    worst = 0
    for event in events:
        if event.index < target:
            up[event.index] = event.kind == "start"
        worst = max(worst, sum(1 for v in up.values() if not v))
    return worst


def supervisor_log(box: Supervised) -> list[dict[str, Any]]:
    out = box.terminate()
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_a_changed_target_converges_live_and_never_overshoots(tmp_path: Path) -> None:
    with live_host(tmp_path, {"1.0.0": fake_wheel(tmp_path, "1.0.0")}) as (box, metadata):
        pid = box.proc.pid if box.proc else 0
        metadata.change({"pilot-target-agents": "11"})
        box.wait_for(lambda: box.status().get("running") == 11 and len(alive(box)) == 11)
        metadata.change({"pilot-target-agents": "5"})
        box.wait_for(lambda: box.status().get("running") == 5 and len(alive(box)) == 5)
        assert sorted(alive(box)) == [0, 1, 2, 3, 4]  # the highest indices stopped
        assert json.loads((tmp_path / "supervisor.json").read_text())["target_agents"] == 5  # a restart keeps it
        assert box.proc is not None and box.proc.pid == pid and box.proc.poll() is None
        log = supervisor_log(box)
    # never above the target of the moment: 11 at most while it was 11, and only stops after it became 5
    starts = [e for e in box.events() if e.kind == "start"]
    assert len(starts) == 11 and max(e.index for e in starts) == 10
    changes = [e["changes"] for e in log if e["event"] == "reconciling"]
    assert changes == [{"target_agents": [TARGET, 11]}, {"target_agents": [11, 5]}]


def test_a_new_version_rolls_over_in_batches_with_the_same_identities(tmp_path: Path) -> None:
    wheels = {"1.0.0": fake_wheel(tmp_path, "1.0.0"), "1.1.0": fake_wheel(tmp_path, "1.1.0")}
    with live_host(tmp_path, wheels) as (box, metadata):
        before = len(box.events())
        metadata.change(attributes(box.config["registry"], box.config["base_udp_port"], "1.1.0", wheels["1.1.0"]))
        box.wait_for(lambda: box.status().get("rollout", {}).get("state") == "done", timeout=30)
        assert alive(box) == dict.fromkeys(range(TARGET), "1.1.0")
        assert registered(box) == TARGET
        box.wait_for(lambda: metadata.guest_attributes.get("pilot/rollout", "").startswith("done 8/8: version"))
        status = box.status()
        config = json.loads((tmp_path / "supervisor.json").read_text())
        events = box.events()[before:]
        log = supervisor_log(box)
    assert status["version"] == "1.1.0" and config["version"] == "1.1.0"
    assert config["daemon"].endswith("/versions/1.1.0/pilot-daemon")
    rolled = [e for e in events if e.kind == "start"]
    assert len(rolled) == TARGET and all(e.detail.startswith("known") for e in rolled)  # identities kept
    assert most_unavailable(events, TARGET) <= 2  # 25% of 8 at a time
    batches = [e["agents"] for e in log if e["event"] == "rollout-batch"]
    assert [len(b) for b in batches] == [2, 2, 2, 2]
    assert status["restarts"] == 0  # a rollout's restarts are not failures


def test_a_wheel_that_fails_its_sha256_is_refused_and_the_old_version_keeps_running(tmp_path: Path) -> None:
    wheels = {"1.0.0": fake_wheel(tmp_path, "1.0.0"), "1.1.0": fake_wheel(tmp_path, "1.1.0")}
    with live_host(tmp_path, wheels) as (box, metadata):
        before = len(box.events())
        tampered = (wheels["1.1.0"][0], "0" * 64)
        metadata.change(attributes(box.config["registry"], box.config["base_udp_port"], "1.1.0", tampered))
        box.wait_for(lambda: box.status().get("rollout", {}).get("state") == "refused")
        assert "sha256 mismatch" in box.status()["rollout"]["reason"]
        assert box.status()["version"] == "1.0.0" and box.events()[before:] == []
        assert not (tmp_path / "opt/versions/1.1.0/pilot-daemon").exists()
        assert alive(box) == dict.fromkeys(range(TARGET), "1.0.0")
        # an installed version is no exception: its binary is reused only for the wheel it came from
        metadata.change(attributes(box.config["registry"], box.config["base_udp_port"], "1.0.0",
                                   (wheels["1.0.0"][0], "1" * 64)))
        box.wait_for(lambda: "1111111111" in box.status().get("rollout", {}).get("reason", ""))
        assert box.events()[before:] == [] and box.status()["version"] == "1.0.0"


def test_a_version_whose_agents_do_not_come_back_is_rolled_back(tmp_path: Path) -> None:
    wheels = {"1.0.0": fake_wheel(tmp_path, "1.0.0"), "1.1.0": fake_wheel(tmp_path, "1.1.0", broken=True)}
    with live_host(tmp_path, wheels) as (box, metadata):
        before = len(box.events())
        metadata.change(attributes(box.config["registry"], box.config["base_udp_port"], "1.1.0", wheels["1.1.0"]))
        box.wait_for(lambda: box.status().get("rollout", {}).get("state") == "failed", timeout=30)
        box.wait_for(lambda: box.status().get("rollout", {}).get("state") == "failed"
                     and alive(box) == dict.fromkeys(range(TARGET), "1.0.0") and registered(box) == TARGET,
                     timeout=30)
        status = box.status()
        assert "agent" in status["rollout"]["reason"] and "exited 1" in status["rollout"]["reason"]
        assert status["version"] == "1.0.0"
        assert json.loads((tmp_path / "supervisor.json").read_text())["version"] == "1.0.0"
        # only the first batch ever stopped: the other six agents ran on untouched
        events = box.events()[before:]
        assert most_unavailable(events, TARGET) <= 2
        assert len({e.index for e in events if e.kind == "stop"}) <= 2


def test_gogc_rolls_like_a_version_and_pacing_applies_without_a_restart(tmp_path: Path) -> None:
    with live_host(tmp_path, {"1.0.0": fake_wheel(tmp_path, "1.0.0")}) as (box, metadata):
        before = len(box.events())
        metadata.change({"pilot-spawn-parallelism": "2"})
        box.wait_for(lambda: json.loads((tmp_path / "supervisor.json").read_text())["spawn_parallelism"] == 2)
        assert box.events()[before:] == []  # pacing alone restarts nothing
        metadata.change({"pilot-gogc": "50"})
        box.wait_for(lambda: box.status().get("rollout", {}).get("state") == "done", timeout=30)
        pids = [int(e.detail.split()[1]) for e in box.events()[before:] if e.kind == "start"]
        assert len(pids) == TARGET
        assert all(b"GOGC=50" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") for pid in pids)


@pytest.mark.parametrize(("change", "problem"), [
    ({"pilot-target-agents": "many"}, "pilot-target-agents='many' is not a whole number"),
    ({"pilot-spawn-parallelism": "201"}, "pilot-spawn-parallelism=201 is outside 1..200"),
    ({"pilot-rollout-max-unavailable": "0"}, "pilot-rollout-max-unavailable=0 is outside above 0..1"),
    ({"pilot-daemon-release": "{}"}, "pilot-daemon-release is not a release with a wheel"),
])
def test_attributes_the_boot_path_would_refuse_change_nothing_live(tmp_path: Path, change: dict[str, str],
                                                                   problem: str) -> None:
    with live_host(tmp_path, {"1.0.0": fake_wheel(tmp_path, "1.0.0")}) as (box, metadata):
        before = len(box.events())
        metadata.change(change)
        box.wait_for(lambda: box.status().get("rollout", {}).get("state") == "refused")
        assert problem in box.status()["rollout"]["reason"]
        assert box.events()[before:] == [] and box.status()["target_agents"] == TARGET
        # the boot path says the same, with the same function
        with pytest.raises(sv.attributes.AttributesError, match=problem.replace("..", r"\.\.")):
            sv.attributes.settings(metadata.attributes)


def test_health_stays_200_through_a_rollout_and_a_raised_target_on_schedule(tmp_path: Path) -> None:
    """A group's autohealing (10 failed checks 30 s apart) must not recreate a VM that is rolling over one batch at a
    time or starting the agents of a raised target at the registry's pace; it must when more than a batch is down."""
    base = {"target_agents": 100, "daemon": "x", "registry": "127.0.0.1:1", "beacon": "127.0.0.1:1",
            "base_udp_port": 20000, "state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run"),
            "spawn_parallelism": 10, "round_delay_seconds": 3.0, "new_registrations_per_minute": 10,
            "health_threshold": 0.95, "rollout_max_unavailable": 0.1, "healthy_during_rampup": True}
    supervisor = sv.supervisor.Supervisor(sv.config.Config(**base))
    supervisor.started -= 10 * sv.pacing.rampup_seconds(supervisor.config)  # long past its start-up
    supervisor.view = {i: (1,) for i in range(90)}  # 90 of 100 running: below 95%
    assert not sv.health.healthy(supervisor)
    supervisor.rollout = sv.rollout.Rollout("version 1.0.0 -> 1.1.0", supervisor.config)
    assert sv.health.healthy(supervisor)  # one batch (10) down
    supervisor.view = {i: (1,) for i in range(89)}
    assert not sv.health.healthy(supervisor)  # more than a batch down: something is wrong
    supervisor.rollout = None
    sv.handover.hand_over(supervisor, sv.handover.Converge(dataclasses.replace(supervisor.config, target_agents=200)))
    sv.live.take_changes(supervisor, time.monotonic())
    assert supervisor.config.target_agents == 200 and sv.health.healthy(supervisor)  # 100 more fresh ones on schedule


class TlsRegistry:
    """A registry port that presents a certificate in a TLS handshake, and another once swapped (a rendezvous
    restarted on a rotated key): a stand-in for the real rendezvous' listener, whose TLS the real daemons meet in
    tests/test_registry_tls.py. The stand-in daemons here never dial it; the supervisor's probe does."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.context: ssl.SSLContext | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def serve(self, seed: str) -> str:
        """Present a new certificate from now on; returns its pin."""
        key, cert = tls_standin.key_and_certificate(seed)
        (self.base / f"{seed}.pem").write_text(cert + key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.base / f"{seed}.pem")
        self.context = context
        return fingerprint(cert)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with suppress(OSError), conn:
                if self.context is not None:
                    with self.context.wrap_socket(conn, server_side=True):
                        pass


def test_a_rotated_pin_waits_for_the_registry_then_rolls_with_the_same_identities(tmp_path: Path) -> None:
    """Rotation: the new pin arrives before the rendezvous serves the new certificate. Nothing is stopped while the
    registry presents the old one (the fault says why); once it presents the new one, the agents roll to it in
    batches, keeping their identities."""
    registry = TlsRegistry(tmp_path)
    old = registry.serve("generation-1")
    with live_host(tmp_path, {"1.0.0": fake_wheel(tmp_path, "1.0.0")}) as (box, metadata):
        metadata.change({"pilot-registry": registry.address, "pilot-registry-fingerprint": old})
        box.wait_for(lambda: box.status().get("rollout", {}).get("state") == "done", timeout=30)
        before = len(box.events())
        new = fingerprint(tls_standin.key_and_certificate("generation-2")[1])  # what the rotation will serve
        metadata.change({"pilot-registry-fingerprint": new})
        box.wait_for(lambda: any(f.startswith("registry-pin:") for f in box.status().get("degraded", [])))
        time.sleep(1.5)  # several ticks and rounds: still nothing stopped
        assert len(box.events()) == before and box.status()["rollout"]["state"] == "rolling"
        assert f"presents certificate {old}, the agents pin {new}" in box.status()["degraded"][0]
        assert registry.serve("generation-2") == new
        box.wait_for(lambda: box.status().get("rollout", {}).get("state") == "done", timeout=30)
        assert not box.status()["degraded"] and registered(box) == TARGET
        assert json.loads((tmp_path / "supervisor.json").read_text())["registry_fingerprint"] == new
        rolled = [e for e in box.events()[before:] if e.kind == "start"]
        log = supervisor_log(box)
    assert len(rolled) == TARGET and all(e.detail.startswith("known") for e in rolled)
    assert [len(e["agents"]) for e in log if e["event"] == "rollout-batch"][-4:] == [2, 2, 2, 2]



def test_a_preemption_stops_every_agent_within_its_deadline_and_keeps_their_identities(tmp_path: Path) -> None:
    """Compute Engine's `preempted` turns TRUE: one journal line, the status says so, every agent stopped (SIGTERMs
    spread, a kill at the deadline for what is left), identities left on the disk, and the supervisor holds until the
    power-off instead of exiting (systemd would restart it and start agents again)."""
    with live_host(tmp_path, {"1.0.0": fake_wheel(tmp_path, "1.0.0")}, preempt_stop_seconds=4.0,
                   preempt_spread_seconds=1.0) as (box, metadata):
        agents = Path(box.config["state_dir"]) / "agents"
        identities = {p.parent.name: p.read_text() for p in agents.glob("*/identity.json")}
        notice = time.monotonic()
        metadata.change_instance({"preempted": "TRUE"})
        box.wait_for(lambda: box.status().get("preempted") is True and not alive(box), timeout=10)
        took = time.monotonic() - notice
        time.sleep(1.0)  # nothing starts again
        assert not alive(box) and box.proc is not None and box.proc.poll() is None
        log = supervisor_log(box)
    assert took <= 4.0 + 1.0, took
    assert [e["event"] for e in log].count("preempted") == 1
    (stop,) = [e for e in log if e["event"] == "preemption-stop"]
    assert stop["agents"] == TARGET and stop["killed_at_deadline"] == 0 and stop["all_gone_seconds"] <= 4.0
    assert {p.parent.name: p.read_text() for p in agents.glob("*/identity.json")} == identities
