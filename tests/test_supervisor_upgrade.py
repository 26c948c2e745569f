"""The supervisor itself, day two (startup/pilot_supervisor/upgrade.py): a new release of the program in the project's
startup script reaches a running host without a reboot and without stopping an agent; a release that cannot read
the host's config is refused and the running one goes on.

The real supervisor (the renderer's zipapp, copied where the test's host keeps it) watches the metadata stand-in's
project `startup-script`, the real rendered script with the zipapp in it replaced. The agents are the stand-in
daemon's."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from pathlib import Path

from fleet.startup_render import render_startup_script
from testbed.supervisor_harness import SUPERVISOR, ZIPAPP, Supervised, release_with, script_with, sv
from tests.test_live_reconcile import TARGET, alive, attributes, fake_wheel, live_host, supervisor_log

CONVERGE = 30.0
SCRIPT = render_startup_script()
ENCODED = base64.encodebytes(ZIPAPP).decode()


def _own_copy(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(SUPERVISOR, lib / SUPERVISOR.name)
    shutil.copy(SUPERVISOR.parent / "contract.json", lib / "contract.json")
    return lib / SUPERVISOR.name


def _agents(box: Supervised) -> set[int]:
    return {pid for pids in sv.agents.list_agents(sv.config.Config(**box.config)).values() for pid in pids}


def test_a_new_supervisor_in_the_script_takes_over_the_running_process_and_its_agents(tmp_path: Path) -> None:
    program = _own_copy(tmp_path)
    new = release_with("pilot_supervisor/release_note.txt", b"the next release\n")
    with live_host(tmp_path, {"1.0.0": fake_wheel(tmp_path, "1.0.0")}, program=program) as (box, metadata):
        assert box.proc is not None
        pid, agents = box.proc.pid, _agents(box)
        assert len(agents) == TARGET
        metadata.change_project({"startup-script": SCRIPT})  # the release it runs: nothing to do
        box.wait_for(lambda: box.status().get("supervisor", {}).get("digest") == hashlib.sha256(ZIPAPP).hexdigest())
        metadata.change_project({"startup-script": script_with(SCRIPT, new)})
        box.wait_for(lambda: box.status()["supervisor"]["digest"] == hashlib.sha256(new).hexdigest(),
                     timeout=CONVERGE)
        assert box.proc.pid == pid and box.proc.poll() is None  # the same process, now the new program
        assert _agents(box) == agents and box.status()["running"] == TARGET  # not one agent stopped
        assert program.read_bytes() == new  # where the unit starts it from: a restart runs the new release
        assert (program.parent / "contract.json").read_text() in SCRIPT
        assert [p.name for p in (program.parent / "releases").iterdir()] == [hashlib.sha256(new).hexdigest()]
        assert box.status()["supervisor"]["upgrade"] == {}  # nothing newer staged or refused
        log = supervisor_log(box)
    events = [e["event"] for e in log]
    assert events.index("supervisor-upgrade-staged") < events.index("supervisor-upgrading") < \
        events.index("supervisor-upgraded")
    assert "agent-exited" not in events


def test_a_release_that_cannot_read_the_hosts_config_is_refused_and_the_running_one_goes_on(tmp_path: Path) -> None:
    program = _own_copy(tmp_path)
    broken = release_with("__main__.py", b"import sys\nsys.exit('this release reads no config')\n")
    with live_host(tmp_path, {"1.0.0": fake_wheel(tmp_path, "1.0.0")}, program=program) as (box, metadata):
        assert box.proc is not None
        pid, agents = box.proc.pid, _agents(box)
        metadata.change_project({"startup-script": script_with(SCRIPT, broken)})
        box.wait_for(lambda: box.status().get("supervisor", {}).get("upgrade", {}).get("state") == "refused",
                     timeout=CONVERGE)
        upgrade = box.status()["supervisor"]["upgrade"]
        assert upgrade["digest"] == hashlib.sha256(broken).hexdigest()
        assert upgrade["reason"] == "its check exited 1: this release reads no config"
        assert box.status()["supervisor"]["digest"] == hashlib.sha256(ZIPAPP).hexdigest()
        assert box.proc.pid == pid and _agents(box) == agents and program.read_bytes() == ZIPAPP
        # a script that is not one (its zipapp cut off) is refused with its reason too, and nothing is staged
        metadata.change_project({"startup-script": SCRIPT.replace(ENCODED, ENCODED[: len(ENCODED) // 2] + "\n")})
        box.wait_for(lambda: box.status()["supervisor"]["upgrade"].get("reason", "").startswith(
            "the supervisor zipapp in the startup script is not"), timeout=CONVERGE)
        # the operator goes back to the running release: the refusal is history
        metadata.change_project({"startup-script": SCRIPT})
        box.wait_for(lambda: box.status()["supervisor"]["upgrade"] == {}, timeout=CONVERGE)
        log = supervisor_log(box)
    assert [e["event"] for e in log].count("supervisor-upgrade-refused") == 2
    assert os.listdir(program.parent / "releases") == [hashlib.sha256(broken).hexdigest()]


def test_a_release_staged_during_a_rollout_waits_for_the_rollout_to_end(tmp_path: Path) -> None:
    """A rollout's batches live in the running program's memory: the new release takes over only once it is done."""
    program = _own_copy(tmp_path)
    new = release_with("pilot_supervisor/release_note.txt", b"the next release\n")
    wheels = {"1.0.0": fake_wheel(tmp_path, "1.0.0"), "1.1.0": fake_wheel(tmp_path, "1.1.0")}
    with live_host(tmp_path, wheels, program=program) as (box, metadata):
        assert box.proc is not None
        pid = box.proc.pid
        # rounds 2 s apart: four batches of two take some 8 s, time enough to stage a release mid-rollout
        metadata.change(attributes(box.config["registry"], box.config["base_udp_port"], "1.1.0", wheels["1.1.0"],
                                   **{"pilot-round-delay-seconds": "2"}))
        box.wait_for(lambda: box.status().get("rollout", {}).get("state") == "rolling", timeout=CONVERGE)
        metadata.change_project({"startup-script": script_with(SCRIPT, new)})
        box.wait_for(lambda: box.status()["supervisor"]["digest"] == hashlib.sha256(new).hexdigest(),
                     timeout=CONVERGE)
        assert box.proc.pid == pid and box.status()["version"] == "1.1.0"
        assert alive(box) == dict.fromkeys(range(TARGET), "1.1.0")
        log = supervisor_log(box)
    events = [e["event"] for e in log]
    assert events.index("supervisor-upgrade-staged") < events.index("rollout-done") < \
        events.index("supervisor-upgrading")
