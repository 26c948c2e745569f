"""The startup script in a sandbox: tuning written, applied and verified; idempotent; loud about ghost keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.boot_sandbox import BootSandbox, MetadataServer

SWARM = {"pilot-role": "swarm", "pilot-agent-target": "3000", "pilot-base-udp-port": "10000",
         "pilot-registry": "203.0.113.11:9000", "enable-oslogin": "TRUE"}


@pytest.fixture
def sandbox(tmp_path, request) -> Iterator[BootSandbox]:
    attributes = dict(getattr(request, "param", SWARM))
    with MetadataServer(attributes).serving() as server:
        box = BootSandbox(tmp_path, server)
        box.prepare()
        yield box


def test_swarm_host_is_tuned_and_verified(sandbox) -> None:
    result = sandbox.run()
    assert result.returncode == 0, result.stderr
    conf = (sandbox.root / "etc/sysctl.d/60-pilot-fleet.conf").read_text()
    assert "net.ipv4.ip_local_reserved_ports = 10000-12999" in conf
    state = sandbox.sysctl_state()
    assert state["kernel.pid_max"] == "4194304" and state["fs.file-max"] == "2097152"
    assert state["net.core.rmem_max"] == state["net.core.wmem_max"] == "16777216"
    assert state["net.ipv4.udp_mem"] == "4096 87380 16777216"
    assert state["net.ipv4.ip_local_reserved_ports"] == "10000-12999"
    unit = (sandbox.root / "etc/systemd/system/pilot-agents.service.d/50-limits.conf").read_text()
    assert "TasksMax=infinity" in unit and "LimitNOFILE=1048576" in unit
    assert "TasksMax=infinity" in (sandbox.root / "etc/systemd/system/user-.slice.d/50-pilot-fleet.conf").read_text()
    assert "systemctl daemon-reload" in sandbox.calls()
    assert not [c for c in sandbox.calls() if "logind" in c]
    assert "kernel tuning verified" in result.stderr


def test_second_run_in_the_same_boot_changes_nothing(sandbox) -> None:
    assert sandbox.run().returncode == 0
    calls, conf = sandbox.calls(), (sandbox.root / "etc/sysctl.d/60-pilot-fleet.conf").stat().st_mtime_ns
    again = sandbox.run()
    assert again.returncode == 0 and "already ran this boot" in again.stderr
    assert sandbox.calls() == calls
    assert (sandbox.root / "etc/sysctl.d/60-pilot-fleet.conf").stat().st_mtime_ns == conf


def test_reboot_reapplies_but_rewrites_nothing(sandbox) -> None:
    assert sandbox.run().returncode == 0
    sandbox.boot_id = "boot-2"
    conf = (sandbox.root / "etc/sysctl.d/60-pilot-fleet.conf").stat().st_mtime_ns
    result = sandbox.run()
    assert result.returncode == 0, result.stderr
    assert (sandbox.root / "etc/sysctl.d/60-pilot-fleet.conf").stat().st_mtime_ns == conf
    assert sandbox.calls().count("systemctl daemon-reload") == 1  # unit files unchanged: no second reload


def test_concurrent_runs_do_the_work_once(sandbox) -> None:
    procs = [sandbox.start() for _ in range(4)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    assert sum("boot path done" in err for _, err in outputs) == 1
    assert sum("already ran this boot" in err for _, err in outputs) == 3
    assert sandbox.calls().count("systemctl daemon-reload") == 1


@pytest.mark.parametrize("sandbox", [{**SWARM, "pilot-role": "worker"}], indirect=True)
def test_unknown_role_fails_before_anything_is_written(sandbox) -> None:
    result = sandbox.run()
    assert result.returncode == 1
    assert "unknown pilot-role 'worker'" in result.stderr
    assert not (sandbox.root / "etc").exists() and sandbox.calls() == []


@pytest.mark.parametrize("sandbox", [{k: v for k, v in SWARM.items() if k != "pilot-agent-target"}],
                         indirect=True)
def test_missing_target_is_named(sandbox) -> None:
    result = sandbox.run()
    assert result.returncode == 1 and "instance attribute pilot-agent-target is missing" in result.stderr
    assert not (sandbox.root / "etc").exists()


@pytest.mark.parametrize("sandbox", [{**SWARM, "pilot-base-udp-port": "64000"}], indirect=True)
def test_port_range_past_65535_is_refused(sandbox) -> None:
    result = sandbox.run()
    assert result.returncode == 1 and "agent ports 64000-66999 run past 65535" in result.stderr


@pytest.mark.parametrize("sandbox", [{**SWARM, "user-data": "#cloud-config", "startup-script-url": "gs://x"}],
                         indirect=True)
def test_ghost_instance_script_keys_are_reported(sandbox) -> None:
    result = sandbox.run()
    assert result.returncode == 0
    assert "WARNING: instance-level script keys present: startup-script-url user-data" in result.stderr
    assert sandbox.metadata.guest_attributes["pilot/bypassed-startup-script"] == "startup-script-url user-data"


def test_tuning_that_does_not_take_effect_fails_the_boot(sandbox) -> None:
    result = sandbox.run(SYSCTL_IGNORE="kernel.pid_max")
    assert result.returncode == 1
    assert "kernel.pid_max is '0', wanted '4194304'" in result.stderr
    assert "kernel tuning did not take effect" in result.stderr


@pytest.mark.parametrize("sandbox", [{"pilot-role": "rendezvous"}], indirect=True)
def test_rendezvous_is_tuned_without_agent_ports(sandbox) -> None:
    result = sandbox.run()
    assert result.returncode == 0, result.stderr
    conf = (sandbox.root / "etc/sysctl.d/60-pilot-fleet.conf").read_text()
    assert "kernel.pid_max = 4194304" in conf and "ip_local_reserved_ports" not in conf
