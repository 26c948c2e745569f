"""The whole dev fleet boots for real: every VM a Debian 12 system container under real systemd (testbed/vm_fleet.py).

The dev stack is planned with each swarm host's target lowered to 20; all three VMs power on at once. The image's
own google-startup-scripts.service runs the project's startup-script from the metadata stand-in; the rendezvous
builds itself from the pinned public source through the product's default path; the swarm hosts install the real
pilot-daemon from the pinned wheel and their supervisors register them with that rendezvous.

Day two follows on the same fleet, through metadata alone as `pulumi up` changes it: one swarm host's target goes
20 -> 30 -> 15, the other (booted on pilotprotocol 1.17.0) is upgraded live to 1.18.0, then offered a wheel whose
sha256 does not match; then every supervisor takes up another pilot-fleet release from the project's startup
script, in place; no unit restarts, no reboot, no SSH.

Stand-ins (named in testbed/vm_fleet.py): sysctl, the enforcement of TasksMax, the store disk, the internet.
One scenario on one fleet, in named phases (PHASES at the end): each starts from the state the previous one left,
so they run as one test, in that order, each reported with its time; the first that fails ends the scenario and
names itself. Where one host's phases wait on clocks (the registry's buckets refilling, systemd's RestartSec) the
other host's run beside them, in a lane of their own (Beside); each lane judges only what its own host did.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fleet.capacity.cold_start import Pacing, vm_cold_start
from fleet.facts import pilot
from fleet.facts.pilot_releases import releases
from fleet.vm_contract import REGISTRATION_LAG_SECONDS, MetadataKey
from testbed.prometheus import prometheus_on
from testbed.supervisor_harness import release_with, script_with
from testbed.vm_fleet import Fleet, fleet_of, journal, plan_stack, registrations, supervisor_events, wait_for
from testbed.vm_host import Host

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="system containers need root")

TARGET = 20
BOOT_DEADLINE = 240.0
# The first minutes after the first boot: the registry's store is damaged within them (issue #36), and the first
# generation must be there by then (the timer keeps one a minute after it starts, accurate to a second).
FIRST_MINUTES = 180.0
GENERATION_DEADLINE = 90.0
FIRST_BOOT: dict[str, float] = {}
# The second swarm host boots on the release before the fleet's and is upgraded live (day two).
OLD_VERSION, NEW_VERSION = "1.17.0", pilot.PILOT_VERSION
# A rollout restarts at most this many agents of a host at once (rolloutMaxUnavailable's default of TARGET).
BATCH = max(1, int(TARGET * pilot.DEFAULT_ROLLOUT_MAX_UNAVAILABLE))


def release_metadata(version: str, tampered: bool = False) -> dict[str, str | None]:
    """A VM's version attributes as the stack renders them; tampered: every wheel's sha256 wrong."""
    value = releases()[version].attribute()
    if tampered:
        row = json.loads(value)
        for wheel in row["wheels"].values():
            wheel["sha256"] = "0" * 64
        value = json.dumps(row)
    return {MetadataKey.VERSION: version, MetadataKey.DAEMON_RELEASE: value}


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The dev stack as shipped, with each swarm host's target lowered to TARGET, planned by `fleet plan`."""
    return plan_stack("dev", TARGET, tmp_path_factory.mktemp("program"))


@pytest.fixture(scope="module")
def fleet(plan: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("fleet")
    (base / "plan.json").write_text(json.dumps(plan))
    with fleet_of(plan, base) as bed:
        bed.swarm[1].change_metadata(release_metadata(OLD_VERSION))  # upgraded live at the end
        yield bed


def _at_target(fleet: Fleet) -> Callable[[], bool]:
    return lambda: all(h.registered_agents() == TARGET for h in fleet.swarm)


def phase_all_hosts_boot_at_once_and_reach_their_targets_registered(fleet: Fleet) -> None:
    assert len(fleet.swarm) == 2 and fleet.rendezvous.name == "pilot-rendezvous-dev"
    with fleet.sampling() as most:
        FIRST_BOOT["at"] = fleet.boot_all()
        wait_for(lambda: fleet.stats() is not None, BOOT_DEADLINE, "the rendezvous never answered")
        wait_for(_at_target(fleet), BOOT_DEADLINE, "the swarm hosts did not reach their targets")
    assert max(most.values()) <= TARGET, most
    stats = fleet.stats()
    assert stats is not None and stats["total_nodes"] == 2 * TARGET and stats["active_nodes"] == 2 * TARGET
    rendezvous = fleet.rendezvous
    # the rendezvous was built by the product's default path, from the pinned source, onto its store disk
    boot_log = rendezvous.journal("google-startup-scripts.service")
    assert "content digest verified" in boot_log and "built the rendezvous in" in boot_log, boot_log[-3000:]
    builds = [p for p in rendezvous.path("/var/lib/pilot-rendezvous/builds").iterdir() if not p.name.startswith(".")]
    assert len(builds) == 1 and (builds[0] / "pilot-rendezvous").stat().st_size > 1_000_000
    # the store disk, formatted and mounted by the startup script with the durable-rename option
    mount = rendezvous.run("findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "/var/lib/pilot-rendezvous").stdout.split()
    assert mount[:2] == ["/dev/disk/by-id/google-pilot-store", "ext4"] and "dirsync" in mount[2].split(","), mount
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
        assert status["running"] == TARGET and status["target_agents"] == TARGET
        # every agent runs the binary itself (never the wheel's wrapper), one process each
        assert len(host.agent_pids()) == TARGET
    assert set(fleet.swarm[0].agent_versions().values()) == {NEW_VERSION}
    assert set(fleet.swarm[1].agent_versions().values()) == {OLD_VERSION}


# Run inside a swarm VM: what the registry presents to a TLS client (the hex SHA-256 of its certificate's DER), and
# what it answers a plaintext registration (pilot-daemon's own JSON framing: a 4-byte length, then the message).
WIRE_PROBE = """
import hashlib, json, socket, ssl, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
with socket.create_connection((host, int(port)), timeout=5) as raw, context.wrap_socket(raw) as tls:
    print(hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest(), tls.version())
message = json.dumps({"type": "register", "listen_addr": "10.0.0.1:4000"}).encode()
with socket.create_connection((host, int(port)), timeout=5) as plain:
    plain.sendall(struct.pack(">I", len(message)) + message)
    answer = b""
    try:
        while chunk := plain.recv(4096):
            answer += chunk
    except OSError:
        pass
print(answer[:64].hex() or "closed")
"""


def phase_agents_register_over_pinned_tls_and_a_wrong_pin_is_a_fault(fleet: Fleet) -> None:
    pin = fleet.swarm[0].attributes[MetadataKey.REGISTRY_FINGERPRINT]
    registry = fleet.swarm[0].attributes[MetadataKey.REGISTRY]
    rendezvous = fleet.rendezvous
    assert re.fullmatch(r"[0-9a-f]{64}", pin) and all(
        h.attributes[MetadataKey.REGISTRY_FINGERPRINT] == pin for h in fleet.swarm)
    # the registry listens with TLS only, on the key Secret Manager gave it, which no metadata carried
    journal = rendezvous.journal("pilot-rendezvous.service")
    assert '"transport":"TLS"' in journal and "registry TLS: on, key from projects/" in journal, journal[-3000:]
    key = rendezvous.path("/run/pilot-rendezvous-tls/key.pem")
    assert key.stat().st_mode & 0o777 == 0o400 and "PRIVATE KEY" in key.read_text()
    for host in fleet.hosts:
        assert not any("PRIVATE KEY" in v for v in host.attributes.values()) and "PRIVATE KEY" not in host.script
    # every agent was started pinned
    for host in fleet.swarm:
        for pid in host.agent_pids():
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            assert argv[argv.index("-registry-fingerprint") + 1] == pin and "-registry-tls" in argv, argv
    # on the wire: a TLS handshake shows the pinned certificate; a plaintext registration gets no answer
    probe = fleet.swarm[0].run("python3", "-c", WIRE_PROBE, registry)
    assert probe.returncode == 0, probe.stderr
    (presented, version), plaintext = (line.split() for line in probe.stdout.splitlines()[:2])
    assert presented == pin and version.startswith("TLSv1"), probe.stdout
    assert plaintext[0] == "closed" or bytes.fromhex(plaintext[0])[4:5] != b"{", probe.stdout
    stats = fleet.stats()
    assert stats is not None and stats["total_nodes"] == 2 * TARGET, stats
    # a wrong pin: the supervisor sees the registry present another certificate, starts nothing, rolls nothing,
    # and says so in its status; the right pin back clears it, and no agent restarted
    host = fleet.swarm[0]
    restarts = host.status()["restarts"]
    host.change_metadata({MetadataKey.REGISTRY_FINGERPRINT: "0" * 64})
    wait_for(lambda: any(f.startswith("registry-pin:") for f in host.status().get("degraded", [])), 60,
             "a wrong pin was not a fault in the status")
    assert len(host.agent_pids()) == TARGET and host.registered_agents() == TARGET
    host.change_metadata({MetadataKey.REGISTRY_FINGERPRINT: pin})
    wait_for(lambda: not host.status().get("degraded") and
             (host.status().get("rollout") or {}).get("state") not in ("rolling", "reverting"), 60,
             "the right pin back did not clear the fault")
    assert host.status()["restarts"] == restarts and len(host.agent_pids()) == TARGET


# The supervisor's capabilities (CapabilityBoundingSet in startup/swarm.sh): chown 0, kill 5, setgid 6, setuid 7.
SUPERVISOR_CAPS = (1 << 0) | (1 << 5) | (1 << 6) | (1 << 7)
# The exposure `systemd-analyze security` gives each unit (0 safest, 10 unsafe), recorded in the README.
EXPOSURE = {"pilot-agents.service": 3.0, "pilot-rendezvous.service": 2.0}


def _processes(host: Host) -> list[tuple[str, int, str]]:
    """(user, pid, command) of every process in the VM."""
    out = host.run("ps", "-eo", "user:32,pid,comm", "--no-headers").stdout
    return [(user, int(pid), comm) for user, pid, comm in (line.split(None, 2) for line in out.splitlines())]


def _exposure(host: Host, unit: str) -> float:
    out = host.run("systemd-analyze", "security", "--no-pager", unit).stdout
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+)", out)
    assert found, out[-2000:]
    return float(found.group(1))


def phase_no_pilot_process_runs_as_root_and_each_unit_is_sandboxed(fleet: Fleet) -> None:
    rendezvous = [(u, c) for u, _, c in _processes(fleet.rendezvous) if c.startswith("pilot-")]
    assert rendezvous == [("pilot-rendezvous", "pilot-rendezvou")], rendezvous
    exposure = {"pilot-rendezvous.service": _exposure(fleet.rendezvous, "pilot-rendezvous.service")}
    for host in fleet.swarm:
        daemons = sorted(u for u, _, c in _processes(host) if c == "pilot-daemon")
        # one user per registration address (its policy route picks the address): half the agents each
        assert daemons == ["pilot-agent"] * (TARGET // 2) + ["pilot-agent-1"] * (TARGET // 2), daemons
        main_pid = host.unit("pilot-agents.service", "MainPID")["MainPID"]
        status = host.path(f"/proc/{main_pid}/status").read_text()
        caps = {k: int(v, 16) for k, v in re.findall(r"^(Cap(?:Eff|Bnd|Amb)):\s+([0-9a-f]+)$", status, re.M)}
        assert caps == {"CapEff": SUPERVISOR_CAPS, "CapBnd": SUPERVISOR_CAPS, "CapAmb": 0}, caps
        agent = Path(f"/proc/{host.agent_pids()[0]}/status").read_text()  # a pid as seen from here
        assert re.search(r"^CapEff:\s+0+$", agent, re.M) and re.search(r"^NoNewPrivs:\s+1$", agent, re.M), agent
        status_file = host.status()
        assert status_file["agents_user"] == "pilot-agent" and status_file["agents_counted_by"] == "cgroup"
        # identities and sockets: the agents' own
        listing = host.run("stat", "-c", "%U %a %n", "/var/lib/pilot-fleet/agents/0/identity.json",
                           "/run/pilot-fleet/agents/0.sock", "/run/pilot-fleet/agents").stdout.split("\n")
        assert [line.split()[:2] for line in listing if line] == [["pilot-agent", "600"], ["pilot-agent", "600"],
                                                                  ["root", "770"]], listing
        exposure["pilot-agents.service"] = _exposure(host, "pilot-agents.service")
    assert all(exposure[unit] <= most for unit, most in EXPOSURE.items()), exposure
    # the rendezvous' build: unpacked, checked and compiled by its build user
    boot_log = fleet.rendezvous.journal("google-startup-scripts.service")
    assert "created the system user pilot-build" in boot_log, boot_log[-2000:]
    print(f"systemd-analyze security exposure: {exposure}")


def phase_a_process_that_only_looks_like_an_agent_is_not_counted(fleet: Fleet) -> None:
    """The spoof: processes with an agent's command line, one as another user, one as the agents' own user but
    outside the agents' cgroup (only root can move a process there). Neither is counted as an agent."""
    host = fleet.swarm[0]
    spoofers = (("nobody", 0), ("pilot-agent", TARGET - 1))
    for user, index in spoofers:
        started = host.run("systemd-run", "--quiet", f"--uid={user}", "--unit", f"spoof-{index}", "python3", "-c",
                           "import time; time.sleep(600)", "-socket", f"/run/pilot-fleet/agents/{index}.sock")
        assert started.returncode == 0, started.stderr
    try:
        wait_for(lambda: sorted(u for u, _, c in _processes(host) if c == "python3" and u != "root")
                 == ["nobody", "pilot-agent"], 10, "the spoofing processes did not start")
        before = host.status()["ticks"]
        scan = 10.0  # the supervisor's full scan interval (Config.scan_seconds)
        wait_for(lambda: host.status()["ticks"] >= before + scan + 2, 60, "the supervisor did not tick on")
        status = host.status()
        assert status["processes"] == TARGET and status["running"] == TARGET, status
        assert len(host.agent_pids()) == TARGET  # it started none in their place, and stopped no real one
    finally:
        host.run("systemctl", "stop", "spoof-0.service", f"spoof-{TARGET - 1}.service")


def phase_rerunning_the_startup_script_adds_nothing(fleet: Fleet) -> None:
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


def phase_a_killed_supervisor_is_restarted_by_systemd_and_never_overshoots(fleet: Fleet) -> None:
    host = fleet.swarm[0]
    main_pid = host.run("systemctl", "show", "pilot-agents.service", "-p", "MainPID", "--value").stdout.strip()
    assert main_pid.isdigit() and main_pid != "0"
    refused = fleet.refusals()
    with fleet.sampling() as most:
        assert host.run("kill", "-KILL", main_pid).returncode == 0
        wait_for(lambda: host.run("systemctl", "show", "pilot-agents.service", "-p", "MainPID", "--value")
                 .stdout.strip() not in ("0", main_pid), 60, "systemd did not restart the supervisor")
        wait_for(lambda: host.registered_agents() == TARGET, 90, "the host did not come back to its target")
    assert most[host.name] <= TARGET, most
    assert fleet.refusals() == refused


STOP_ROUNDS = 10


def _main_pid(host: Host) -> str:
    return host.unit("pilot-agents.service", "MainPID")["MainPID"]


def _stop_phase(fleet: Fleet, index: int) -> None:
    """SIGKILL of the supervisor, then `pilot-fleet-agents stop`, ten times: half the rounds on each swarm host (each
    host's half is a phase of its own, run beside another host's phase). In the first, third and fifth round the
    stop comes after systemd restarted the supervisor and the host recovered; in the others it lands at once (the
    unit is reaping what its supervisor left, or waiting to restart). Every round ends with no agent running, within
    the stop budget, and `pilot-fleet-agents start` brings the host back. (The cause this guards: systemd could not
    kill the unit's cgroup, "Failed to kill control group ...: Input/output error", so agents outlived their
    supervisor, and a stop while the unit waited to restart ended it with every agent still running. ExecStopPost
    now stops them.)"""
    host = fleet.swarm[index]
    took = _stop_rounds(host, STOP_ROUNDS // len(fleet.swarm))
    print(f"stop after a killed supervisor, {len(took)} rounds on {host.name}: longest {max(took):.1f} s, budget "
          f"{_stop_budget(host)} s")


def phase_a_stop_always_stops_after_a_killed_supervisor_on_the_first_host(fleet: Fleet) -> None:
    _stop_phase(fleet, 0)


def phase_a_stop_always_stops_after_a_killed_supervisor_on_the_second_host(fleet: Fleet) -> None:
    _stop_phase(fleet, 1)


def _stop_rounds(host: Host, rounds: int) -> list[float]:
    budget = _stop_budget(host)
    took = []
    for round_ in range(rounds):
        where = f"{host.name} round {round_ + 1}"
        killed = _main_pid(host)
        assert killed != "0" and host.run("kill", "-KILL", killed).returncode == 0

        def recovered(killed: str = killed) -> bool:
            return _main_pid(host) not in ("0", killed) and host.registered_agents() == TARGET \
                and host.status().get("running") == TARGET

        if round_ % 2:
            wait_for(lambda killed=killed: _main_pid(host) != killed, 30, f"{where}: systemd did not see it die")
        else:
            wait_for(recovered, 120, f"{where}: the host did not recover")
        began = time.monotonic()
        assert host.run("pilot-fleet-agents", "stop").returncode == 0
        wait_for(lambda: not host.agent_pids()  # "failed": its last supervisor was killed, not stopped
                 and host.unit("pilot-agents.service", "ActiveState")["ActiveState"] in ("inactive", "failed"), budget,
                 f"{where}: agents still running after the stop")
        took.append(time.monotonic() - began)
        assert host.run("pilot-fleet-agents", "start").returncode == 0
        wait_for(lambda: host.registered_agents() == TARGET, 120, f"{where}: no recovery after start")
    journal = host.journal("pilot-agents.service")
    assert '"event": "leftover-agents"' in journal  # the unit's ExecStopPost stopped what a killed one left
    assert host.status()["agents_counted_by"] == "cgroup"
    return took


def _stop_budget(host: Host) -> int:
    """The unit's stop budget in seconds: its TimeoutStopSec (the supervisor's paced-stop budget + 60 s)."""
    unit = host.path("/etc/systemd/system/pilot-agents.service").read_text()
    found = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M)
    assert found, unit
    return int(found.group(1))


def _new_nodes(fleet: Fleet, addresses: list[str], since: float) -> list[tuple[float, str, str]]:
    """The registry's new nodes since SINCE (epoch seconds) registered from ADDRESSES (a host's registration
    addresses): a phase that runs beside another host's judges only what its own host registered."""
    return [(when, mode, listen) for when, mode, listen in registrations(fleet, since)
            if mode == "new_node" and listen.rsplit(":", 1)[0] in addresses]


def phase_after_a_power_loss_the_host_comes_back_with_its_identities(fleet: Fleet) -> None:
    host = fleet.swarm[1]
    identities, addresses, since = host.identities(), host.status()["registration_addresses"], time.time()
    assert len(identities) == TARGET
    refused = fleet.refusals()
    host.power_loss()
    assert host.agent_pids() == []
    with fleet.sampling() as most:
        host.boot()
        wait_for(lambda: host.registered_agents() == TARGET, 90, "the host did not come back to its target")
    assert most[host.name] <= TARGET
    assert host.identities() == identities  # same keys: re-registration, not new identities
    assert not _new_nodes(fleet, addresses, since)  # no node was added
    assert fleet.refusals() == refused  # re-registration of known keys is never rate limited
    assert not _failed_starts(host), _failed_starts(host)  # the agents' unit started cleanly before the script ran
    boot_log = host.journal("google-startup-scripts.service")
    # the boot disk kept pilot-daemon and the supervisor's config
    assert "installed and checked; supervisor config unchanged" in boot_log, boot_log[-2000:]


# A preemption: Compute Engine's notice, then the ACPI power-off, then a hard one 30 s after the notice.
PREEMPTION_SECONDS = 30.0


def phase_a_preempted_vm_stops_its_agents_in_the_grace_and_comes_back_as_the_same_identities(fleet: Fleet) -> None:
    """A Spot preemption as Compute Engine does it: `preempted` turns TRUE, the VM gets its ACPI power-off, what still
    runs 30 s after the notice is powered off hard; then the group recreates the VM on its disks (here: it boots
    again on the same ones, `preempted` FALSE). The supervisor stops every agent within the grace, on its own
    notice; every agent comes back as the identity it was."""
    host = fleet.swarm[1]
    identities, addresses = host.identities(), host.status()["registration_addresses"]
    refused = fleet.refusals()
    since = time.time()
    notice = time.monotonic()
    host.set_preempted(True)
    wait_for(lambda: not host.agent_pids(), 25, "the agents were not all stopped within 25 s of the notice")
    stopped = time.monotonic() - notice
    # its own account follows once it has reaped them
    wait_for(lambda: bool(supervisor_events(host, "preemption-stop", since)), 10, "no preemption-stop in the journal")
    assert host.status().get("preempted") is True
    (event,) = supervisor_events(host, "preempted", since)
    (stop,) = supervisor_events(host, "preemption-stop", since)
    assert stop["agents"] == TARGET and stop["killed_at_deadline"] == 0, stop
    shut_down = host.acpi_power_off(PREEMPTION_SECONDS - (time.monotonic() - notice))
    seen = [m for _, m in journal(fleet.rendezvous, "pilot-rendezvous.service", since)]
    deregistered = sum(1 for m in seen if "deregistered node" in m)
    errors = sum(1 for m in seen if '"level":"ERROR"' in m and "get_network_policy" not in m)
    host.set_preempted(False)  # the recreated VM is not being preempted
    booted = time.monotonic()
    host.boot()
    wait_for(lambda: host.registered_agents() == TARGET, BOOT_DEADLINE, "the host did not come back to its target")
    back = time.monotonic() - booted
    assert host.identities() == identities  # the same keys: re-registration, not new identities
    assert fleet.refusals() == refused
    new = _new_nodes(fleet, addresses, since)  # no node was added
    assert not new, new
    print(f"preemption of {host.name}: {event['agents']} agents stopped {stopped:.1f} s after the notice "
          f"({stop['all_gone_seconds']} s by its own count), VM shut down by itself: {shut_down}; back at "
          f"{TARGET} registered {back:.1f} s after its boot; 0 new identities, 0 refusals; the registry logged "
          f"{deregistered} deregistrations and {errors} errors meanwhile")


def phase_fleet_verify_says_ok_against_that_rendezvous(fleet: Fleet) -> None:
    result = fleet.in_bridge(sys.executable, "-m", "fleet", "verify", "--outputs", str(fleet.base / "plan.json"),
                             "--no-per-host", "--json", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] == "ok" and report["online"] == 2 * TARGET and report["expected"] == 2 * TARGET


# The bed's alert timings (fleet monitoring's settings; the shipped ones are the seed's 60 s and 15 minutes)
SCRAPE_EVERY, BELOW_TARGET_FOR = "1s", "5s"


def phase_a_real_prometheus_scrapes_every_supervisor_and_an_alert_fires_and_resolves(fleet: Fleet) -> None:
    """Debian's Prometheus with exactly what `fleet monitoring` wrote from the plan's outputs: every supervisor and
    the rendezvous are up with the outputs' labels, every dashboard query reads series; a host held below its target
    fires PilotHostBelowTarget, and the alert resolves when the host is back."""
    base = fleet.base / "prometheus"
    base.mkdir()
    fleet_label = fleet.plan["outputs"]["project"]
    with prometheus_on(fleet.rendezvous, fleet.base / "plan.json", base, "--scrape-interval", SCRAPE_EVERY,
                       "--alert-for", f"PilotHostBelowTarget={BELOW_TARGET_FOR}") as prometheus:
        def up() -> list[dict[str, Any]]:
            return [t for t in prometheus.targets() if t["health"] == "up"]

        wait_for(lambda: len(up()) == 3, 60, "Prometheus did not find both supervisors and the rendezvous up")
        by_job: dict[str, list[dict[str, Any]]] = {}
        for target in up():
            by_job.setdefault(target["labels"]["job"], []).append(target["labels"])
        agents = sorted(by_job["pilot-agents"], key=lambda labels: labels["pilot_host"])
        assert [a["pilot_host"] for a in agents] == [h.name for h in fleet.swarm]
        assert all(a["pilot_fleet"] == fleet_label and a["pilot_zone"] == "us-central1-a"
                   and a["pilot_target_agents"] == str(TARGET) for a in agents), agents
        (rendezvous,) = by_job["pilot-rendezvous"]
        assert rendezvous["pilot_host"] == fleet.rendezvous.name and rendezvous["instance"].startswith("127.0.0.1:")
        # every query of the dashboards (Grafana's, and Cloud Monitoring's: the same definitions) reads real series
        board = json.loads((base / "monitoring" / "pilot-fleet.grafana.json").read_text())
        queries = [t["expr"] for panel in board["panels"] for t in panel["targets"]]

        unread: list[str] = []

        def all_read() -> bool:
            unread[:] = [q for q in queries if not prometheus.api("query", query=q)["result"]]
            return not unread

        try:
            wait_for(all_read, 60, "dashboard queries read no series")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {unread}") from None
        assert len(queries) == 12, queries
        online = prometheus.api("query", query=f'pilot_nodes_online{{pilot_fleet="{fleet_label}"}}')["result"]
        assert float(online[0]["value"][1]) == 2 * TARGET, online  # the registry's own count, through its /metrics
        # what a VM sends Managed Service for Prometheus through the Ops Agent (README "Monitoring": its cost): the
        # scraped series, not Prometheus' own (up, scrape_*) nor its rules' (ALERTS*: a fleet-wide alert pending
        # has no host)
        series = {r["metric"]["pilot_host"]: int(r["value"][1]) for r in prometheus.api(
            "query", query='count by (pilot_host) ({__name__=~".+", __name__!~"scrape_.*|up|ALERTS.*"})')["result"]}
        print(f"series scraped per VM (without Prometheus' own up and scrape_*): {series}")
        assert all(n > 0 for n in series.values()) and len(series) == 3, series
        # held below its target: its registry pin made wrong (the supervisor starts nothing), five agents killed
        host = fleet.swarm[0]
        pin = host.attributes[MetadataKey.REGISTRY_FINGERPRINT]
        host.change_metadata({MetadataKey.REGISTRY_FINGERPRINT: "0" * 64})
        wait_for(lambda: any(f.startswith("registry-pin:") for f in host.status().get("degraded", [])), 60,
                 "the wrong pin was not a fault")
        for pid in host.agent_pids()[:5]:
            os.kill(pid, signal.SIGKILL)

        def firing() -> list[dict[str, Any]]:
            return [a for a in prometheus.alerts("PilotHostBelowTarget")
                    if a["state"] == "firing" and a["labels"]["pilot_host"] == host.name]

        wait_for(lambda: bool(firing()), 60, "PilotHostBelowTarget did not fire for the host held below target")
        assert float(firing()[0]["value"]) == TARGET - 5
        host.change_metadata({MetadataKey.REGISTRY_FINGERPRINT: pin})
        wait_for(lambda: host.registered_agents() == TARGET, 120, "the host did not come back to its target")
        wait_for(lambda: not prometheus.alerts("PilotHostBelowTarget"), 60, "the alert did not resolve")


def phase_the_rendezvous_is_not_built_again_on_the_same_store_disk(fleet: Fleet) -> None:
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


def _this_boot(host: Host, unit: str) -> str:
    return host.run("journalctl", "-b", "--no-pager", "-o", "cat", "-u", unit).stdout


def _registry_back(fleet: Fleet, what: str) -> None:
    wait_for(lambda: (fleet.stats() or {}).get("total_nodes") == 2 * TARGET
             and (fleet.stats() or {}).get("active_nodes") == 2 * TARGET, 120, what)


def phase_a_damaged_registry_store_comes_back_from_its_last_good_generation(fleet: Fleet) -> None:
    """The seed fleet's lost registry, in the first minutes after the first deploy (the cold start, when nearly
    every identity is new): `registry.json` truncated mid-file (an interrupted write), then deleted. Each time the
    rendezvous is power-cycled; its unit's ExecStartPre restores the last good generation, which the generations
    timer kept within a minute of the first registrations (nothing here asks for it), so the registry knows every
    agent and they all re-register as known identities: no refusal, no new node."""
    rendezvous = fleet.rendezvous
    kept = rendezvous.path("/var/lib/pilot-rendezvous/generations")
    wait_for(lambda: any(kept.glob("registry-*.json")), GENERATION_DEADLINE,
             "the timer kept no generation of the first registrations")
    assert "store generations: kept registry-" in rendezvous.journal("pilot-store-generations.service")
    refused = fleet.refusals()
    assert time.monotonic() - FIRST_BOOT["at"] < FIRST_MINUTES, "not the first minutes any more"
    for damage in ("truncated", "deleted"):
        rendezvous.power_loss()
        with rendezvous.store_offline() as disk:
            store = disk / "registry.json"
            if damage == "truncated":
                store.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
            else:
                store.unlink()
        rendezvous.boot()
        _registry_back(fleet, f"the registry did not come back from a {damage} store")
        journal = _this_boot(rendezvous, "pilot-rendezvous.service")
        assert "registry store: restored registry-" in journal, journal[-3000:]
        assert "registry starting fresh" not in journal and "new_node" not in journal  # no identity was new
        owners = rendezvous.run("stat", "-c", "%U", "/var/lib/pilot-rendezvous/registry.json",
                                "/var/lib/pilot-rendezvous/generations").stdout.split()
        assert owners == ["pilot-rendezvous"] * 2, owners  # the rendezvous' own, to write again
    assert fleet.refusals() == refused  # every agent re-registered as the identity the registry knew


def phase_with_no_good_generation_the_rendezvous_does_not_start_empty(fleet: Fleet) -> None:
    rendezvous = fleet.rendezvous
    aside = rendezvous.base / "store-aside"
    rendezvous.power_loss()
    with rendezvous.store_offline() as disk:
        aside.mkdir()
        shutil.copy2(disk / "registry.json", aside / "registry.json")
        shutil.move(disk / "generations", aside / "generations")
        (disk / "registry.json").write_bytes((aside / "registry.json").read_bytes()[:100])
    rendezvous.boot()
    wait_for(lambda: "registry store: ERROR: " in _this_boot(rendezvous, "pilot-rendezvous.service"), 120,
             "the rendezvous did not refuse to start over a damaged store")
    journal = _this_boot(rendezvous, "pilot-rendezvous.service")
    assert "no good generation exists" in journal and "registry starting fresh" not in journal
    assert fleet.stats() is None  # not started
    assert rendezvous.path("/var/lib/pilot-rendezvous/registry.json").stat().st_size == 100  # the store untouched
    # the operator puts a good store back: it starts on it
    rendezvous.power_loss()
    with rendezvous.store_offline() as disk:
        shutil.copy2(aside / "registry.json", disk / "registry.json")
        shutil.move(aside / "generations", disk / "generations")
    rendezvous.boot()
    _registry_back(fleet, "the registry did not come back on the store put back")


UNIT_IDENTITY = ("MainPID", "NRestarts", "ExecMainStartTimestampMonotonic")


def _agent_indices(host: Host) -> list[int]:
    return sorted(int(Path(sock).stem) for sock in host.agent_sockets().values())


def phase_a_changed_target_converges_live_with_no_unit_restart(fleet: Fleet) -> None:
    host = fleet.swarm[0]
    unit = host.unit("pilot-agents.service", *UNIT_IDENTITY)
    with fleet.sampling() as most:
        host.change_metadata({MetadataKey.TARGET_AGENTS: "30"})
        wait_for(lambda: host.registered_agents() == 30, 180, "the host did not grow to 30 registered agents")
    assert most[host.name] == 30, most
    with fleet.sampling() as most:
        host.change_metadata({MetadataKey.TARGET_AGENTS: "15"})
        wait_for(lambda: len(host.agent_pids()) == 15 and host.status().get("running") == 15, 60,
                 "the host did not shrink to 15 agents")
    assert most[host.name] <= 30, most
    assert _agent_indices(host) == list(range(15))  # the highest indices were stopped
    assert host.unit("pilot-agents.service", *UNIT_IDENTITY) == unit  # the same supervisor, never restarted
    journal = host.journal("pilot-agents.service")
    assert '"changes": {"target_agents": [20, 30]}' in journal and '"changes": {"target_agents": [30, 15]}' in journal


def phase_a_new_daemon_version_rolls_over_live_keeping_every_identity(fleet: Fleet) -> None:
    host = fleet.swarm[1]
    identities, refused = host.identities(), fleet.refusals()
    addresses, since = host.status()["registration_addresses"], time.time()
    unit = host.unit("pilot-agents.service", *UNIT_IDENTITY)
    least = [TARGET]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            least[0] = min(least[0], host.registered_agents())
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        began = time.monotonic()
        host.change_metadata(release_metadata(NEW_VERSION))
        wait_for(lambda: host.status().get("rollout", {}).get("state") == "done"
                 and set(host.agent_versions().values()) == {NEW_VERSION} and host.registered_agents() == TARGET,
                 240, f"the host did not roll over to {NEW_VERSION}")
        took = time.monotonic() - began
    finally:
        done.set()
        sampler.join(timeout=10)
    assert least[0] >= TARGET - BATCH, least  # registered throughout, but for one batch at a time
    assert host.identities() == identities and fleet.refusals() == refused  # same keys: nothing to rate-limit
    assert not _new_nodes(fleet, addresses, since)
    assert host.unit("pilot-agents.service", *UNIT_IDENTITY) == unit
    journal = host.journal("pilot-agents.service")
    assert journal.count('"event": "rollout-batch"') == TARGET // BATCH, journal[-3000:]
    assert f"version {OLD_VERSION} -> {NEW_VERSION}" in journal
    print(f"rollout of {TARGET} agents {OLD_VERSION} -> {NEW_VERSION}: {took:.1f} s")


def phase_a_wheel_that_fails_its_sha256_is_refused_and_the_host_keeps_its_version(fleet: Fleet) -> None:
    host = fleet.swarm[1]
    running = host.agent_versions()
    host.change_metadata(release_metadata(OLD_VERSION, tampered=True))
    wait_for(lambda: host.status().get("rollout", {}).get("state") == "refused", 60,
             "the supervisor did not refuse the tampered wheel")
    assert "sha256 mismatch" in host.status()["rollout"]["reason"]
    assert host.agent_versions() == running  # the same processes, still on the new version
    assert host.registered_agents() == TARGET


def phase_a_new_supervisor_release_takes_over_live_keeping_every_agent(fleet: Fleet) -> None:
    """`pulumi up` of another pilot-fleet release changes the project's startup script: each swarm host's supervisor
    stages the zipapp in it, checks it against the host's config and re-executes itself in place, under real
    systemd: the same main PID, no unit restart, every agent the same process (upgrade.py)."""
    new = release_with("pilot_supervisor/release_note.txt", b"a release after this one\n")
    wanted = hashlib.sha256(new).hexdigest()
    before = {h.name: (h.unit("pilot-agents.service", *UNIT_IDENTITY), sorted(h.agent_pids())) for h in fleet.swarm}
    for host in fleet.swarm:
        host.change_metadata({MetadataKey.STARTUP_SCRIPT: script_with(host.script, new)}, project=True)
    for host in fleet.swarm:
        wait_for(lambda h=host: h.status().get("supervisor", {}).get("digest") == wanted, 60,
                 f"{host.name}'s supervisor did not take up the new release")
        assert (host.unit("pilot-agents.service", *UNIT_IDENTITY), sorted(host.agent_pids())) == before[host.name]
        # where the unit starts it from: a restart, the unit's stop and the next boot run the new release
        assert host.path("/opt/pilot-fleet/lib/pilot-supervisor.pyz").read_bytes() == new
        journal = host.journal("pilot-agents.service")
        assert "supervisor-upgrade-staged" in journal and "supervisor-upgraded" in journal
        assert host.status()["running"] == host.target


def phase_a_recreated_swarm_vm_comes_back_on_its_state_disk_with_no_new_identity(fleet: Fleet) -> None:
    """A VM that autohealing, a rolling update or a replacement recreates: a fresh boot disk, the same agent state
    disk. Its agents come back as the identities the registry knows: no new node, no refusal."""
    host = fleet.swarm[0]
    target = host.target
    identities, refused = host.identities(), fleet.refusals()
    nodes = (fleet.stats() or {}).get("total_nodes")
    assert len(identities) >= target
    host.power_loss()
    shutil.rmtree(host.base / "upper")
    shutil.rmtree(host.base / "work")
    subprocess.run(["umount", "-l", str(host.merged)], check=False)
    with fleet.sampling() as most:
        host.boot()
        wait_for(lambda: host.registered_agents() == target, 120, "the recreated VM did not come back to its target")
    assert most[host.name] <= target
    boot_log = host.journal("google-startup-scripts.service")
    assert "supervisor config changed" in boot_log  # a fresh boot disk: installed and configured again
    assert "formatting" not in boot_log  # ... on the state disk it had
    assert host.identities() == identities and fleet.refusals() == refused
    assert (fleet.stats() or {}).get("total_nodes") == nodes
    starts = [line for line in host.journal("pilot-agents.service").splitlines() if '"agent-started"' in line]
    assert starts and all('"fresh_identity": false' in line for line in starts)


def phase_a_rendezvous_failover_to_the_other_zone_keeps_every_agent(fleet: Fleet, scratch: Path) -> None:
    """The failover drill. The dev stack keeps the registry's store on a regional disk (failoverZone); its zone is
    lost (the rendezvous VM dies at once); the takeover is what `pulumi up` carries out after
    `pulumi config set --path pilot-fleet:rendezvous.activeZone us-central1-b`: the VM deleted and created again
    in the other zone on a fresh boot disk, with the same address and the same store disk (done here by the test
    bed, from that very plan). Every agent comes back online at the new rendezvous as the identity it was, with
    no refusal in its log."""
    after = plan_stack("dev", TARGET, scratch, {"activeZone": "us-central1-b"})
    before_vm = next(r for r in fleet.plan["resources"] if r["name"] == fleet.rendezvous.name
                     and r["type"] == "gcp:compute/instance:Instance")["inputs"]
    after_vm = next(r for r in after["resources"] if r["name"] == fleet.rendezvous.name
                    and r["type"] == "gcp:compute/instance:Instance")["inputs"]
    assert (before_vm["zone"], after_vm["zone"]) == ("us-central1-a", "us-central1-b")
    assert after["outputs"]["rendezvousIp"] == fleet.plan["outputs"]["rendezvousIp"]
    assert after_vm["attachedDisks"] == before_vm["attachedDisks"]  # the same regional disk, force-attached
    wait_for(lambda: all(h.registered_agents() == h.target for h in fleet.swarm), 120, "agents not settled")
    running = sum(h.target for h in fleet.swarm)
    assert fleet.registry_connections() == running
    identities = {h.name: h.identities() for h in fleet.swarm}
    lost, since = time.monotonic(), time.time()
    fleet.rendezvous.power_loss()  # its zone is gone
    new = fleet.fail_over_rendezvous(after)
    new.boot()
    # every running agent holds its connection to the new registry again (one each: docs/pilot-facts.md), and the
    # registry counts it online. (Not "as many online as before": the nodes of agents stopped in the last 3 minutes
    # count as online too until the registry reaps them, and whether it has depends on when the drill runs.)
    wait_for(lambda: fleet.registry_connections() == running, BOOT_DEADLINE,
             "the agents did not all connect to the new rendezvous")
    took = time.monotonic() - lost
    wait_for(lambda: (fleet.stats() or {}).get("active_nodes", 0) >= running, 30, "the registry counts them offline")
    # the registry came with its disk: every agent re-registered as a node it knew (a new one is logged), none refused
    assert not [r for r in registrations(fleet, since) if r[1] == "new_node"]
    assert {h.name: h.identities() for h in fleet.swarm} == identities
    assert fleet.refusals() == 0  # the new rendezvous' own log: nobody had to register as new
    boot_log = new.journal("google-startup-scripts.service")
    assert "is already built on the store disk" in boot_log  # the build came with the disk too
    assert all(h.registered_agents() == h.target for h in fleet.swarm)
    print(f"failover drill: zone lost -> every agent connected to the new rendezvous: {took:.1f} s")


# A daemon whose registry went away registers again by itself within a keepalive interval (30 s at the pinned
# commit, docs/pilot-facts.md): so long after a rendezvous start, its agents' re-registrations are done.
REREGISTERED_WITHIN = 30.0 + 5.0


def _last_registration(fleet: Fleet, host: Host, addresses: list[str]) -> float:
    """When the last registration from ADDRESSES may have been (epoch seconds): a new identity (the rendezvous logs
    it), a start by HOST's supervisor (known identities: the rendezvous logs those at debug level only), or the
    re-registrations every agent makes by itself after the rendezvous started. Too early an answer fails the phase
    (a fresh identity refused), never passes it."""
    since = time.time() - 900
    new = [when for when, _, listen in registrations(fleet, since) if listen.rsplit(":", 1)[0] in addresses]
    started = [event["when"] for event in supervisor_events(host, "agent-started", since)]
    mono = int(fleet.rendezvous.unit("pilot-rendezvous.service", "ExecMainStartTimestampMonotonic")
               ["ExecMainStartTimestampMonotonic"]) / 1e6
    rendezvous_started = time.time() - (time.monotonic() - mono)
    return max([*new, *started, rendezvous_started + REREGISTERED_WITHIN])


def _until_buckets_are_full(fleet: Fleet, host: Host, addresses: list[str]) -> None:
    """Sleep until the buckets of ADDRESSES (the registry's, and the supervisor's, which refills from the
    contract's lag after a take) are full again: a minute after their last registration."""
    time.sleep(max(0.0, _last_registration(fleet, host, addresses) + 60 + REGISTRATION_LAG_SECONDS + 1 - time.time()))


def _udp_counters(host: Host) -> dict[str, int]:
    lines = [line.split() for line in host.run("cat", "/proc/net/snmp").stdout.splitlines() if line.startswith("Udp:")]
    return dict(zip(lines[0][1:], (int(v) for v in lines[1][1:]), strict=True))


def phase_fresh_identities_register_from_two_addresses_in_the_planned_time(fleet: Fleet) -> None:
    """A cold start from two registration addresses (the dev stack's registrationAddresses: the VM's internal
    address and its alias IP): 2 x TARGET identities new to the registry, against the planner's figure for the same
    pacing and addresses (fleet/capacity/cold_start.py), and the registry's floor for two addresses. Each agent
    registers from its own address, the rendezvous logs both (`new_node`), and a peer VM reaches an agent at its
    alias."""
    host, peer = fleet.swarm
    addresses = host.status()["registration_addresses"]
    assert len(addresses) == 2 and addresses[0] == host.internal_ip, addresses
    # Past the target, the identities an earlier phase made (20 -> 30) are known to the registry: they start first,
    # and take a token each where there is one, on both sides (the registry counts every registration it can).
    # The fresh ones come after them, from index `first`.
    first = max(int(index) for index in host.identities()) + 1
    fresh = 2 * TARGET
    target = first + fresh
    running = len(host.agent_pids())  # every index from here to the target starts: known ones first
    a = host.attributes
    pacing = Pacing(fresh, 2, float(a[MetadataKey.NEW_REGISTRATIONS_PER_MINUTE]),
                    int(a[MetadataKey.SPAWN_PARALLELISM]), float(a[MetadataKey.ROUND_DELAY_SECONDS]),
                    known=first - running)
    # The buckets for these addresses (the registry's, and the supervisor's, which refills from the contract's lag
    # after a take) are full again a minute after their last registration: a new one (logged), or a known one
    # (logged only at debug level: the agents re-registered with a restarted rendezvous in earlier phases).
    _until_buckets_are_full(fleet, host, addresses)
    began = time.time()
    host.change_metadata({MetadataKey.TARGET_AGENTS: str(target)})
    wait_for(lambda: host.registered_agents() == target, 600, "the fresh identities did not all register")
    new = [(when, listen) for when, _, listen in _new_nodes(fleet, addresses, began - 1)]
    base = int(a[MetadataKey.BASE_UDP_PORT])
    assert sorted(int(listen.rsplit(":", 1)[1]) - base for _, listen in new) == list(range(first, target)), new
    assert fleet.refusals() == 0
    starts = supervisor_events(host, "agent-started", began)
    assert sorted(e["index"] for e in starts if e["fresh_identity"]) == list(range(first, target)), starts
    took = max(when for when, _ in new) - min(e["time"] for e in starts)
    predicted = vm_cold_start(pacing)
    # the floor, per address: every registration takes a token where there is one, known ones included
    per_address = math.ceil((pacing.target_agents + pacing.known) / 2)
    floor = 10 + (per_address - pacing.per_minute) * 60 / pacing.per_minute
    one = vm_cold_start(dataclasses.replace(pacing, addresses=1))
    print(f"{fresh} fresh identities (after {first - running} known) from 2 addresses: {took:.1f} s; planner "
          f"{predicted:.1f} s ({took / predicted:.2f}x); floor for 2 addresses {floor:.0f} s ({took / floor:.2f}x); "
          f"from one address the planner says {one:.0f} s")
    assert predicted / 1.1 <= took <= predicted * 1.1 and took <= floor * 1.1
    # each address registered half of them: the one policy routing gave its agents' user
    sources = sorted(listen.rsplit(":", 1)[0] for _, listen in new)
    assert sources == sorted(addresses * (fresh // 2)), sources
    # a peer VM reaches an agent at its registered address: datagrams to the alias' agent port are taken by a
    # socket there (no "no port" count), while the same to a port nobody holds are counted as such
    index = first if first % 2 else first + 1  # odd: registers from the alias
    port = base + index
    alias = addresses[1]
    assert f"{alias}:{port}" in [listen for _, listen in new]
    holder = host.run("ss", "-Hunap", f"sport = :{port}").stdout
    assert "pilot-daemon" in holder, holder
    send = "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); " \
           "[s.sendto(b'peer', (sys.argv[1], int(sys.argv[2]))) for _ in range(5)]"
    before = _udp_counters(host)
    assert peer.run("python3", "-c", send, alias, str(port)).returncode == 0
    middle = _udp_counters(host)
    assert peer.run("python3", "-c", send, alias, "9").returncode == 0  # discard: nobody listens
    after = _udp_counters(host)
    assert middle["NoPorts"] == before["NoPorts"] and after["NoPorts"] == middle["NoPorts"] + 5, (before, after)
    host.change_metadata({MetadataKey.TARGET_AGENTS: str(TARGET)})
    wait_for(lambda: len(host.agent_pids()) == TARGET, 120, "the host did not come back to its target")


# How systemd says a unit could not even start its process (exit statuses 200-243 are its own: NAMESPACE, USER, ...),
# as opposed to a process that ran and exited or was killed, which the phases above cause on purpose.
START_FAILED = re.compile(r"Failed at step \w+|Failed to set up mount namespacing|status=2[0-4]\d/[A-Z_]+")
FLEET_UNITS = ("pilot-agents.service", "pilot-rendezvous.service", "pilot-store-generations.service",
               "google-startup-scripts.service")


def _failed_starts(host: Host) -> list[str]:
    units = [arg for unit in FLEET_UNITS for arg in ("-u", unit)]
    journal = host.run("journalctl", "--no-pager", "-o", "short-monotonic", *units, timeout=120).stdout
    return [line for line in journal.splitlines() if START_FAILED.search(line)]


def phase_no_unit_of_the_fleet_failed_a_start(fleet: Fleet) -> None:
    """Every start of the fleet's units, across every boot, power loss and recreation above (the journal of each
    VM's boots since its boot disk was made), set up its process: a unit that fails at NAMESPACE after a reboot, and
    works only when Restart= tries again, is a defect even though it recovers."""
    failed = {host.name: _failed_starts(host) for host in fleet.hosts}
    assert not any(failed.values()), failed


# A scale-up the registry paces: the burst of 10 per registration address, then one every 6 s.
SCALE_UP_FRESH = 30


def phase_a_registry_restart_during_a_scale_up_costs_no_refusal(fleet: Fleet) -> None:
    """The second host grows by SCALE_UP_FRESH fresh identities from its two addresses, its buckets full, and the
    rendezvous restarts (`systemctl restart`: it saves its store on the way down) once the burst has registered.
    The restarted registry's buckets are new and full; the agents it knows heartbeat on without registering again
    (pilot-daemon registers again only after 3 failed heartbeats); so the supervisor's buckets stay the careful ones:
    no refusal, every fresh identity registered once, in the planner's time for the same pacing. (The operator also
    puts the host's version attributes right: the tampered wheel above is still asked for, and refused.)"""
    host = fleet.swarm[1]
    addresses = host.status()["registration_addresses"]
    _until_buckets_are_full(fleet, host, addresses)
    a, refused, target = host.attributes, fleet.refusals(), TARGET + SCALE_UP_FRESH
    pacing = Pacing(SCALE_UP_FRESH, len(addresses), float(a[MetadataKey.NEW_REGISTRATIONS_PER_MINUTE]),
                    int(a[MetadataKey.SPAWN_PARALLELISM]), float(a[MetadataKey.ROUND_DELAY_SECONDS]))
    burst = TARGET + len(addresses) * int(pacing.per_minute)
    began = time.time()
    host.change_metadata({**release_metadata(NEW_VERSION), MetadataKey.TARGET_AGENTS: str(target)})
    wait_for(lambda: host.registered_agents() >= burst, 60, "the scale-up's burst did not register")
    time.sleep(2.0)  # past the registry's save (at most once a second)
    restarted = fleet.rendezvous.run("systemctl", "restart", "pilot-rendezvous.service", timeout=60)
    assert restarted.returncode == 0, restarted.stderr
    wait_for(lambda: host.registered_agents() == target, 300, "the scale-up did not finish after the restart")
    new = [when for when, mode, _ in registrations(fleet, began - 1) if mode == "new_node"]
    starts = supervisor_events(host, "agent-started", began)
    took, predicted = max(new) - min(e["time"] for e in starts), vm_cold_start(pacing)
    print(f"scale-up {TARGET} -> {target} with a registry restart: {took:.1f} s, planner {predicted:.1f} s "
          f"({took / predicted:.2f}x)")
    assert fleet.refusals() == refused and len(new) == SCALE_UP_FRESH, (fleet.refusals() - refused, len(new))
    assert predicted / 1.1 <= took <= predicted * 1.1
    host.change_metadata({MetadataKey.TARGET_AGENTS: str(TARGET)})
    wait_for(lambda: len(host.agent_pids()) == TARGET, 120, "the host did not come back to its target")


@dataclasses.dataclass(frozen=True)
class Beside:
    """Phases run at once: each lane in a thread of its own, its phases in order. A lane acts on its own host and
    judges only what that host did (its agents, the registrations from its addresses) and the registry's refusals,
    which no phase expects from any host; so the waits of one lane (a registry bucket refilling a minute, systemd's
    RestartSec) pass while the other works, and neither lane's checks loosen."""

    lanes: tuple[tuple[Callable[..., None], ...], ...]


PHASES: list[Callable[..., None] | Beside] = [
    phase_all_hosts_boot_at_once_and_reach_their_targets_registered,
    phase_agents_register_over_pinned_tls_and_a_wrong_pin_is_a_fault,
    phase_no_pilot_process_runs_as_root_and_each_unit_is_sandboxed,
    phase_rerunning_the_startup_script_adds_nothing,
    # the first host's supervisor scanning for a spoof, then killed, beside the second host's power loss and
    # preemption (known identities only)
    Beside(((phase_a_process_that_only_looks_like_an_agent_is_not_counted,
             phase_a_killed_supervisor_is_restarted_by_systemd_and_never_overshoots),
            (phase_after_a_power_loss_the_host_comes_back_with_its_identities,
             phase_a_preempted_vm_stops_its_agents_in_the_grace_and_comes_back_as_the_same_identities))),
    # the first minutes: by now the generations timer has kept the first registrations
    phase_a_damaged_registry_store_comes_back_from_its_last_good_generation,
    phase_with_no_good_generation_the_rendezvous_does_not_start_empty,
    # the last start of the rendezvous before the cold start below: every agent registers again after one, which
    # takes a token from its address' bucket
    phase_the_rendezvous_is_not_built_again_on_the_same_store_disk,
    phase_fleet_verify_says_ok_against_that_rendezvous,
    phase_a_real_prometheus_scrapes_every_supervisor_and_an_alert_fires_and_resolves,
    phase_a_changed_target_converges_live_with_no_unit_restart,
    # the first host's cold start (a minute of waiting for its buckets, two of registering) beside the second host's
    # stops and rollout, which register only identities the registry knows
    Beside(((phase_fresh_identities_register_from_two_addresses_in_the_planned_time,),
            (phase_a_stop_always_stops_after_a_killed_supervisor_on_the_second_host,
             phase_a_new_daemon_version_rolls_over_live_keeping_every_identity,
             phase_a_wheel_that_fails_its_sha256_is_refused_and_the_host_keeps_its_version))),
    phase_a_new_supervisor_release_takes_over_live_keeping_every_agent,
    # the first host's stops (known identities from its own addresses) beside the second host's paced scale-up
    Beside(((phase_a_stop_always_stops_after_a_killed_supervisor_on_the_first_host,),
            (phase_a_registry_restart_during_a_scale_up_costs_no_refusal,))),
    phase_a_recreated_swarm_vm_comes_back_on_its_state_disk_with_no_new_identity,
    phase_a_rendezvous_failover_to_the_other_zone_keeps_every_agent,
    phase_no_unit_of_the_fleet_failed_a_start,
]


def test_the_dev_fleet_from_first_boot_to_a_rendezvous_failover(fleet: Fleet,
                                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    """Run with -rP to see the phase report when it passes; a failure names its phase."""
    every = [p for entry in PHASES for lane in (entry.lanes if isinstance(entry, Beside) else ((entry,),))
             for p in lane]
    assert len(set(every)) == len(every)
    report: list[str] = []

    def run(phase: Callable[..., None]) -> None:
        number, name = every.index(phase) + 1, phase.__name__.removeprefix("phase_").replace("_", " ")
        started = time.monotonic()
        failover = phase is phase_a_rendezvous_failover_to_the_other_zone_keeps_every_agent
        extra = (tmp_path_factory.mktemp("failover"),) if failover else ()
        try:
            phase(fleet, *extra)
        except BaseException as exc:
            raise AssertionError(f"phase {number}/{len(every)} failed after {time.monotonic() - started:.1f} s: "
                                 f"{name}") from exc
        report.append(f"phase {number:2}/{len(every)} ok in {time.monotonic() - started:6.1f} s: {name}")
        print(report[-1], flush=True)

    for entry in PHASES:
        try:
            if not isinstance(entry, Beside):
                run(entry)
                continue
            started = time.monotonic()
            with ThreadPoolExecutor(len(entry.lanes)) as pool:
                lanes = [pool.submit(lambda lane=lane: [run(phase) for phase in lane]) for lane in entry.lanes]
            for lane in lanes:
                lane.result()  # the first lane's failure, after both ended
            print(f"  (the {len(entry.lanes)} lanes above ran beside each other: {time.monotonic() - started:.1f} s)",
                  flush=True)
        except BaseException:
            print("\n".join(report))
            raise
