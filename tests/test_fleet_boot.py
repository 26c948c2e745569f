"""The whole dev fleet boots for real: every VM a Debian 12 system container under real systemd (tests/vm_fleet.py).

The dev stack is planned with each swarm host's target lowered to 20; all three VMs power on at once. The image's
own google-startup-scripts.service runs the project's startup-script from the metadata stand-in; the rendezvous
builds itself from the pinned public source through the product's default path; the swarm hosts install the real
pilot-daemon from the pinned wheel and their supervisors register them with that rendezvous.

Stand-ins (named in tests/vm_fleet.py): sysctl, the enforcement of TasksMax, the store disk, the internet.
The tests run in file order on one fleet: each phase starts from the state the previous one left.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.vm_fleet import Fleet, fleet_of, plan_stack, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="system containers need root")

TARGET = 20
BOOT_DEADLINE = 240.0


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The dev stack as shipped, with each swarm host's target lowered to TARGET, planned by `fleet plan`."""
    return plan_stack("dev", TARGET, tmp_path_factory.mktemp("program"))


@pytest.fixture(scope="module")
def fleet(plan: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("fleet")
    (base / "plan.json").write_text(json.dumps(plan))
    with fleet_of(plan, base) as bed:
        yield bed


def _at_target(fleet: Fleet) -> Callable[[], bool]:
    return lambda: all(h.registered_agents() == TARGET for h in fleet.swarm)


def test_all_hosts_boot_at_once_and_reach_their_targets_registered(fleet: Fleet) -> None:
    assert len(fleet.swarm) == 2 and fleet.rendezvous.name == "pilot-rendezvous-dev"
    with fleet.sampling() as most:
        fleet.boot_all()
        wait_for(lambda: fleet.stats() is not None, BOOT_DEADLINE, "the rendezvous never answered")
        wait_for(_at_target(fleet), BOOT_DEADLINE, "the swarm hosts did not reach their targets")
    assert max(most.values()) <= TARGET, most
    stats = fleet.stats()
    assert stats is not None and stats["total_nodes"] == 2 * TARGET and stats["active_nodes"] == 2 * TARGET
    rendezvous = fleet.rendezvous
    # the rendezvous was built by the product's default path, from the pinned source, onto its store disk
    boot_log = rendezvous.journal("google-startup-scripts.service")
    assert "content digest verified" in boot_log and "built the rendezvous in" in boot_log, boot_log[-3000:]
    builds = [p for p in (rendezvous.store / "builds").iterdir() if not p.name.startswith(".")]  # type: ignore[operator]
    assert len(builds) == 1 and (builds[0] / "pilot-rendezvous").stat().st_size > 1_000_000
    unit = rendezvous.run("systemctl", "show", "pilot-rendezvous.service", "-p", "ActiveState,Restart,LimitNOFILE")
    assert unit.stdout.split() == ["Restart=always", "LimitNOFILE=1048576", "ActiveState=active"], unit.stdout
    for host in fleet.swarm:
        shown = host.run("systemctl", "show", "pilot-agents.service", "-p",
                         "ActiveState,KillMode,Restart,LimitNOFILE,TasksMax,After").stdout
        props = dict(line.split("=", 1) for line in shown.splitlines())
        assert props["ActiveState"] == "active" and props["KillMode"] == "mixed" and props["Restart"] == "always"
        assert props["LimitNOFILE"] == "1048576" and props["TasksMax"] == "infinity"  # recorded; see vm_fleet
        assert "network-online.target" in props["After"]
        status = json.loads(host.path("/run/pilot-fleet/status.json").read_text())
        assert status["running"] == TARGET and status["target"] == TARGET
        # every agent runs the binary itself (never the wheel's wrapper), one process each
        assert len(host.agent_pids()) == TARGET


def test_rerunning_the_startup_script_adds_nothing(fleet: Fleet) -> None:
    refused = fleet.refusals()
    before = {h.name: sorted(h.agent_pids()) for h in fleet.swarm}
    with fleet.sampling() as most:
        for host in fleet.swarm:
            restart = host.run("systemctl", "restart", "google-startup-scripts.service", timeout=120)
            assert restart.returncode == 0, restart.stderr
            runs = [subprocess.Popen(["nsenter", "-t", str(host.leader), "-a", "--",
                                      "google_metadata_script_runner", "startup"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True) for _ in range(2)]
            outputs = [run.communicate(timeout=120)[0] for run in runs]
            assert [run.returncode for run in runs] == [0, 0], outputs
            assert all("already ran this boot" in out for out in outputs), outputs
        time.sleep(2.0)  # a second fleet would be starting by now: the supervisors' rounds are 3 s apart
    assert {h.name: sorted(h.agent_pids()) for h in fleet.swarm} == before
    assert max(most.values()) == TARGET and fleet.refusals() == refused
    journal = fleet.swarm[0].journal("google-startup-scripts.service")
    assert journal.count("already ran this boot") >= 1


def test_a_killed_supervisor_is_restarted_by_systemd_and_never_overshoots(fleet: Fleet) -> None:
    host = fleet.swarm[0]
    main_pid = host.run("systemctl", "show", "pilot-agents.service", "-p", "MainPID", "--value").stdout.strip()
    assert main_pid.isdigit() and main_pid != "0"
    refused = fleet.refusals()
    with fleet.sampling() as most:
        assert host.run("kill", "-KILL", main_pid).returncode == 0
        wait_for(lambda: host.run("systemctl", "show", "pilot-agents.service", "-p", "MainPID", "--value")
                 .stdout.strip() not in ("0", main_pid), 60, "systemd did not restart the supervisor")
        wait_for(_at_target(fleet), 90, "the host did not come back to its target")
    assert most[host.name] <= TARGET, most
    assert fleet.refusals() == refused


def test_after_a_power_loss_the_host_comes_back_with_its_identities(fleet: Fleet) -> None:
    host = fleet.swarm[1]
    identities = host.identities()
    assert len(identities) == TARGET
    refused = fleet.refusals()
    host.power_loss()
    assert host.agent_pids() == []
    with fleet.sampling() as most:
        host.boot()
        wait_for(lambda: host.registered_agents() == TARGET, 90, "the host did not come back to its target")
    assert most[host.name] <= TARGET
    assert host.identities() == identities  # same keys: re-registration, not new identities
    stats = fleet.stats()
    assert stats is not None and stats["total_nodes"] == 2 * TARGET  # no node was added
    assert fleet.refusals() == refused  # re-registration of known keys is never rate limited
    boot_log = host.journal("google-startup-scripts.service")
    assert "already installed" in boot_log, boot_log[-2000:]  # the boot disk kept pilot-daemon


def test_fleet_verify_says_ok_against_that_rendezvous(fleet: Fleet) -> None:
    result = fleet.in_bridge(sys.executable, "-m", "fleet", "verify", "--outputs", str(fleet.base / "plan.json"),
                             "--no-per-host", "--json", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] == "ok" and report["online"] == 2 * TARGET and report["expected"] == 2 * TARGET


def test_the_rendezvous_is_not_built_again_on_the_same_store_disk(fleet: Fleet) -> None:
    rendezvous = fleet.rendezvous
    rendezvous.power_loss()
    shutil.rmtree(rendezvous.base / "upper")  # a recreated VM: a fresh boot disk, the same store disk
    shutil.rmtree(rendezvous.base / "work")
    subprocess.run(["umount", "-l", str(rendezvous.merged)], check=False)
    rendezvous.boot()
    wait_for(lambda: fleet.stats() is not None, 120, "the recreated rendezvous did not answer")
    boot_log = rendezvous.journal("google-startup-scripts.service")
    assert "is already built on the store disk" in boot_log and "building the rendezvous" not in boot_log
    assert re.search(r"installed pilot-rendezvous built from [0-9a-f]{40}", boot_log)
    # its registry came back from the store disk: every agent is still known
    wait_for(lambda: (fleet.stats() or {}).get("total_nodes") == 2 * TARGET, 60, "the registry lost its nodes")
