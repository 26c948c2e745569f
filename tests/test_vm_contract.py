"""The VM contract (fleet/vm_contract.py) as both sides read it: the program writes metadata by the contract's field
names, the zipapp's checker (startup/pilot_supervisor/attributes.py, with the rendered contract.json) reads it back,
for both roles; a renamed key is written and read under both names for one release; verify reads the guest
attributes under their old names too. No plans, no processes: the fast layer."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from fleet import vm_contract
from fleet.facts import pilot
from fleet.facts.pilot_releases import releases
from fleet.startup_render import render_contract
from fleet.verify.compute_api import connected
from fleet.verify.guest_attributes import read_hosts
from fleet.vm_contract import MetadataKey, metadata
from testbed.stats_server import Answer, StatsServer
from testbed.supervisor_harness import sv

check, AttributesError = sv.attributes.check, sv.attributes.AttributesError


def swarm(**overrides: str) -> dict[str, str]:
    values = {"version": pilot.PILOT_VERSION, "daemon_release": releases()[pilot.PILOT_VERSION].attribute(),
              "target_agents": "3000", "registry": "203.0.113.5:9000", "beacon": "203.0.113.5:9001",
              "base_udp_port": "10000", "state_device": pilot.STATE_DEVICE, **overrides}
    return {k: str(v) for k, v in metadata(pilot.ROLE_SWARM, values).items()}


def rendezvous(**overrides: str) -> dict[str, str]:
    values = {"version": pilot.PILOT_VERSION, "registry_port": "9000", "beacon_port": "9001",
              "dashboard_port": "3000", "source_commit": "a" * 40, "source_url": "https://example.org/s.tar.gz",
              "source_digest": "b" * 64, "go_version": "1.27.3", **overrides}
    return {k: str(v) for k, v in metadata(pilot.ROLE_RENDEZVOUS, values).items()}


def test_the_rendered_contract_names_every_key_and_both_roles() -> None:
    rendered = json.loads(render_contract())
    assert rendered["keys"] == {k: v for k, v in vars(MetadataKey).items() if k.isupper()}
    assert set(rendered["swarm"]) == set(vm_contract.SWARM_ATTRIBUTES)
    assert set(rendered["rendezvous"]) == set(vm_contract.RENDEZVOUS_ATTRIBUTES)
    assert rendered["swarm"]["target_agents"]["key"] == "pilot-target-agents"
    assert rendered["metrics"]["target_agents"]["name"] == "pilot_target_agents"


def test_what_the_program_writes_the_vm_reads_back_typed() -> None:
    got = check("swarm", swarm())
    assert (got["role"], got["target_agents"], got["base_udp_port"], got["spawn_parallelism"]) == \
        ("swarm", 3000, 10000, pilot.DEFAULT_SPAWN_PARALLELISM)  # unset: the contract's default
    assert got["round_delay_seconds"] == pilot.DEFAULT_ROUND_DELAY_SECONDS and got["state_device"] == pilot.STATE_DEVICE
    settings = sv.attributes.settings(swarm(), arch="x86_64")
    assert settings["wheel_url"].startswith("https://") and "state_device" not in settings


def test_a_renamed_key_is_written_under_both_names_and_read_under_either() -> None:
    written = swarm(target_agents="42")
    assert written["pilot-target-agents"] == written["pilot-agent-target"] == "42"
    old_only = {k: v for k, v in written.items() if k != "pilot-target-agents"}
    assert check("swarm", old_only)["target_agents"] == 42  # metadata written by the previous program
    assert check("swarm", {**written, "pilot-agent-target": "7"})["target_agents"] == 42  # the new name wins


@pytest.mark.parametrize(("change", "problem"), [
    ({"pilot-target-agents": "0"}, "pilot-target-agents=0 is outside 1..64512 (one UDP port per agent"),
    ({"pilot-target-agents": "12.5"}, "pilot-target-agents='12.5' is not a whole number"),
    ({"pilot-spawn-parallelism": "201"}, "pilot-spawn-parallelism=201 is outside 1..200"),
    ({"pilot-health-threshold": "0"}, "pilot-health-threshold=0 is outside above 0..1"),
    ({"pilot-registry": "no-port"}, "pilot-registry='no-port' is not HOST:PORT"),
    ({"pilot-version": "1.18"}, "pilot-version='1.18' is not a version like 1.18.0"),
    ({"pilot-base-udp-port": "65000"}, "agent ports 65000-67999 run past 65535"),
    ({"pilot-role": "relay"}, "unknown pilot-role 'relay' (expected rendezvous or swarm)"),
])
def test_a_bad_swarm_attribute_is_one_message_naming_it(change: dict[str, str], problem: str) -> None:
    with pytest.raises(AttributesError) as raised:
        check("", {**swarm(), **change})
    assert problem in str(raised.value)


def test_a_missing_required_attribute_is_named() -> None:
    without = {k: v for k, v in swarm().items() if k not in ("pilot-target-agents", "pilot-agent-target")}
    with pytest.raises(AttributesError, match="instance attribute pilot-target-agents is missing"):
        check("swarm", without)


def test_the_rendezvous_is_checked_by_the_same_checker() -> None:
    got = check("", rendezvous())
    assert (got["role"], got["registry_port"], got["store_device"]) == ("rendezvous", 9000, pilot.STORE_DEVICE)
    with pytest.raises(AttributesError, match=r"pilot-registry-port=70000 is outside 1\.\.65535"):
        check("rendezvous", rendezvous(registry_port="70000"))
    with pytest.raises(AttributesError, match="pilot-standby-of is set: a -standby rendezvous never receives"):
        check("rendezvous", {**rendezvous(), MetadataKey.STANDBY_OF: "203.0.113.9:9000"})
    no_source = {k: v for k, v in rendezvous().items() if "source" not in k and k != MetadataKey.GO_VERSION}
    with pytest.raises(AttributesError, match="the rendezvous has no install source"):
        check("rendezvous", no_source)
    with pytest.raises(AttributesError, match="pilot-rendezvous-sha256 is missing"):
        check("rendezvous", {**no_source, MetadataKey.RENDEZVOUS_URL: "https://example.org/rv"})
    with pytest.raises(AttributesError, match="instance attribute pilot-role='rendezvous' is not swarm"):
        check("swarm", rendezvous())


def test_verify_reads_a_guest_attribute_under_its_old_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A supervisor that has not rebooted into this contract still publishes `agents-target`."""
    published: dict[str, Any] = {
        "old": {"agents-target": "4000", "agents-running": "4000"},
        "new": {"target-agents": "4500", "agents-running": "4400", "agents-target": "1"},
    }
    # its metadata asks for the stack's 5,000 (so its 4,000 is a change in progress)
    asked = {"old": {MetadataKey.TARGET_AGENTS: "5000"}}
    with StatsServer([Answer.stats()], guest_attributes=published, metadata=asked).serving() as server:
        monkeypatch.setitem(os.environ, "PILOT_FLEET_COMPUTE_API", f"{server.base}/compute/v1")
        monkeypatch.setitem(os.environ, "PILOT_FLEET_ACCESS_TOKEN", "test-token")
        with connected() as api:
            old, new = read_hosts(api, "p", [("old", "z", 5000), ("new", "z", 5000)])
    assert (old.target_agents, old.planned_target_agents, old.running, old.converging) == (4000, 5000, 4000, True)
    assert (new.target_agents, new.running) == (4500, 4400)


def test_a_config_written_by_the_previous_supervisor_still_loads(tmp_path: Any) -> None:
    """Between the boot path's new config and the unit's restart, the old supervisor may persist a live change in
    the old shape (`target`): the new one reads it for this release."""
    path = tmp_path / "supervisor.json"
    base = {"daemon": "x", "registry": "127.0.0.1:1", "beacon": "127.0.0.1:1", "base_udp_port": 20000,
            "state_dir": "s", "run_dir": "r", "spawn_parallelism": 10, "round_delay_seconds": 3.0,
            "new_registrations_per_minute": 10, "health_threshold": 0.95, "rollout_max_unavailable": 0.1}
    path.write_text(json.dumps({**base, "target": 12}))
    assert sv.config.Config.load(path).target_agents == 12
