"""Configuration: the shipped stacks parse; every bad input is one clear problem naming its key."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from fleet.config.model import FleetConfigError
from fleet.config.pulumi_source import parse_flat_config
from fleet.plan.stack_files import load_project, wire_value
from tests.conftest import REPO, load_stack_config


def parse_stack(stack: str):
    return parse_flat_config(load_project(REPO, stack).config)


def problems_for(config: dict[str, Any]) -> list[str]:
    with pytest.raises(FleetConfigError) as excinfo:
        parse_flat_config({k: wire_value(v) for k, v in config.items()})
    return excinfo.value.problems


def prod_with(path: str, value: Any) -> dict[str, Any]:
    """The prod config with one field changed; path like 'pilot-fleet:swarmHosts.2.targetAgents'."""
    config = copy.deepcopy(load_stack_config("prod"))
    key, *rest = path.split(".")
    if not rest:
        config[key] = value
        return config
    node = config[key]
    for part in rest[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = rest[-1]
    node[int(last) if isinstance(node, list) else last] = value
    return config


def test_prod_reproduces_the_seed_fleet() -> None:
    cfg = parse_stack("prod")
    assert cfg.rendezvous.name == "pilot-rendezvous"
    assert cfg.gcp.zone == "us-central1-a"
    assert [(h.name, h.machine_type, h.target_agents) for h in cfg.swarm_hosts] == [
        ("swarm-1", "e2-standard-16", 3000), ("swarm-2", "n2d-highcpu-128", 5000), ("swarm-3", "e2-standard-8", 1500)]
    assert cfg.expected_agents == 9500
    assert cfg.swarm_hosts[2].gogc == 50  # the memory-tight host


def test_agent_defaults_apply_unless_a_host_overrides() -> None:
    cfg = parse_stack("prod")
    assert [h.gogc for h in cfg.swarm_hosts] == [100, 100, 50]  # swarm-3's own; the others take the default
    assert {h.base_udp_port for h in cfg.swarm_hosts} == {10000} and {h.round_delay_seconds for h in cfg.swarm_hosts} \
        == {3.0}  # agentDefaults
    assert [h.spawn_parallelism for h in cfg.swarm_hosts] == [50, 80, 30]  # each host's rounds, sized for 4 minutes


def test_dev_stack_is_small() -> None:
    cfg = parse_stack("dev")
    assert cfg.expected_agents == 200 and len(cfg.swarm_hosts) == 2  # two hosts: the whole-fleet test boots both


def test_seed_memory_incident_is_rejected() -> None:
    # 2,000 agents on a 32 GB VM went to swap in the seed fleet; 1,500 is what it runs.
    [problem] = problems_for(prod_with("pilot-fleet:swarmHosts.2.targetAgents", 2000))
    assert problem.startswith("pilot-fleet:swarmHosts[2].targetAgents (swarm-3):")
    assert "29,696 MB" in problem and "e2-standard-8" in problem and "at most 1,856 agents" in problem


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("pilot-fleet:swarmHosts.0.machineType", "e2-standard-99",
     "pilot-fleet:swarmHosts[0].machineType: unknown machine type 'e2-standard-99'"),
    ("pilot-fleet:rendezvous.machineType", "n9-mega-1",
     "pilot-fleet:rendezvous.machineType: unknown machine type 'n9-mega-1'"),
    ("pilot-fleet:swarmHosts.1.baseUdpPort", 62000,
     "pilot-fleet:swarmHosts[1].baseUdpPort (swarm-2): UDP ports 62000-66999 (5000 agents from baseUdpPort 62000) "
     "run past 65535"),
    ("pilot-fleet:swarmHosts.2.baseUdpPort", 8000,
     "pilot-fleet:swarmHosts[2].baseUdpPort (swarm-3): UDP ports 8000-9499 (1500 agents from baseUdpPort 8000) "
     "include the rendezvous registry port 9000"),
    ("pilot-fleet:swarmHosts.2.baseUdpPort", 2000,
     "include the rendezvous dashboard port 3000"),
    ("pilot-fleet:swarmHosts.0.baseUdpPort", 30000,
     "overlap the kernel's ephemeral port range 32768-60999"),
    ("pilot-fleet:swarmHosts.1.name", "swarm-1",
     "pilot-fleet:swarmHosts[1].name: duplicate name 'swarm-1' (also pilot-fleet:swarmHosts[0].name)"),
    ("pilot-fleet:swarmHosts.0.name", "pilot-rendezvous",
     "duplicate name 'pilot-rendezvous' (also pilot-fleet:rendezvous.name)"),
    ("pilot-fleet:swarmHosts.0.targetAgents", -5,
     "pilot-fleet:swarmHosts[0].targetAgents (swarm-1): Input should be greater than or equal to 1"),
    ("pilot-fleet:swarmHosts.0.roundDelaySeconds", -1,
     "pilot-fleet:swarmHosts[0].roundDelaySeconds (swarm-1): Input should be greater than or equal to 0"),
    ("pilot-fleet:swarmHosts.0.spawnParallelism", 201,
     "pilot-fleet:swarmHosts[0].spawnParallelism (swarm-1): Input should be less than or equal to 200"),
    ("pilot-fleet:memory.osReserveMb", -1, "pilot-fleet:memory.osReserveMb: Input should be greater than or equal"),
    ("pilot-fleet:swarmHosts.0.targetAgnets", 3000, "pilot-fleet:swarmHosts[0].targetAgnets (swarm-1): unknown key"),
    ("pilot-fleet:rendezvous.operatorRanges", ["0.0.0.0/33"], "pilot-fleet:rendezvous.operatorRanges[0]: not a CIDR"),
    ("pilot-fleet:swarmHosts.0.name", "Swarm_1", "is not a valid Compute Engine name"),
    ("pilot-fleet:swarmHosts.0.zone", "europe-west1-b",
     "pilot-fleet:swarmHosts[0].zone: zone europe-west1-b is not in region us-central1 (gcp:region)"),
    # a zone that does not exist (fleet/facts/data/zones.yaml), with the nearest one suggested
    ("pilot-fleet:swarmHosts.0.zone", "us-central1-z",
     "pilot-fleet:swarmHosts[0].zone: us-central1-z is not a zone of us-central1 (did you mean us-central1-f? its "
     "zones: us-central1-a, us-central1-b, us-central1-c, us-central1-f; fleet/facts/data/zones.yaml)"),
    ("pilot-fleet:rendezvous.failoverZone", "us-central1-e", "us-central1-e is not a zone of us-central1"),
    # an empty source list is what the pack calls world-open (Compute Engine reads no source as 0.0.0.0/0)
    ("pilot-fleet:sshSourceRanges", [], "pilot-fleet:sshSourceRanges: List should have at least 1 item"),
    ("pilot-fleet:alertThreshold", 1.5, "pilot-fleet:alertThreshold: Input should be less than or equal to 1"),
    ("pilot-fleet:rendezvous.ports.dashboard", 9000,
     "pilot-fleet:rendezvous.ports: registry and dashboard cannot share TCP port 9000"),
    # a disk key: a KMS key's resource name, in the disks' region or global
    ("pilot-fleet:diskKmsKey", "disks-key", "pilot-fleet:diskKmsKey: 'disks-key' is not a Cloud KMS key name"),
    ("pilot-fleet:diskKmsKey", "projects/kms-project/locations/europe-west1/keyRings/fleet/cryptoKeys/disks",
     "pilot-fleet:diskKmsKey: the key is in europe-west1; the fleet's disks are in us-central1"),
])
def test_bad_input_names_the_key_and_the_reason(path: str, value: Any, expected: str) -> None:
    problems = problems_for(prod_with(path, value))
    assert any(expected in p for p in problems), problems


def test_missing_project_is_reported() -> None:
    config = load_stack_config("prod")
    del config["gcp:project"]
    assert "gcp:project: required but not set" in problems_for(config)


def test_region_defaults_to_the_zone_region() -> None:
    config = load_stack_config("dev")
    del config["gcp:region"]
    cfg = parse_flat_config({k: wire_value(v) for k, v in config.items()})
    assert cfg.gcp.region == "us-central1"


def test_the_rendezvous_builds_from_the_pinned_source_unless_a_release_is_set() -> None:
    from fleet.components.fleet import install_source_metadata
    from fleet.facts.rendezvous_build import build_table

    pinned = build_table().sources[build_table().default_source]
    for stack in ("prod", "scale", "dev"):  # prod and scale pin it in their files; dev takes the default
        assert parse_stack(stack).rendezvous.source == pinned.commit
    metadata = install_source_metadata(parse_stack("prod").rendezvous)  # by the VM contract's field names
    assert metadata == {"source_commit": pinned.commit, "source_url": pinned.url,
                        "source_digest": pinned.tree_sha256, "go_version": pinned.go}
    release = {"url": "https://releases.example.com/rv", "sha256": "0" * 64}
    config = prod_with("pilot-fleet:rendezvous.release", release)
    del config["pilot-fleet:rendezvous"]["source"]  # a release instead of the pin (both is an error)
    cfg = parse_flat_config({k: wire_value(v) for k, v in config.items()})
    assert install_source_metadata(cfg.rendezvous) == {"release_url": release["url"],
                                                       "release_sha256": release["sha256"]}


@pytest.mark.parametrize(("source", "problem"), [
    (None, "pilot-fleet:rendezvous.source: the rendezvous has no install source: set it to a pinned commit "
           "(4c54cc0c7b1412bc06260d408ca9ee83e6f1063b) or set pilot-fleet:rendezvous.release (url, sha256 of a "
           "prebuilt binary)"),
    ("", "pilot-fleet:rendezvous.source: the rendezvous has no install source"),
    ("0" * 40, "pilot-fleet:rendezvous.source: commit '0000000000000000000000000000000000000000' is not pinned in "
               "fleet/facts/data/rendezvous_build.yaml (pinned: 4c54cc0c7b1412bc06260d408ca9ee83e6f1063b)"),
])
def test_a_rendezvous_that_could_not_install_is_a_config_error(source, problem) -> None:
    problems = problems_for(prod_with("pilot-fleet:rendezvous.source", source))
    assert len(problems) == 1 and problems[0].startswith(problem), problems


@pytest.mark.parametrize(("key", "problem"), [
    ("pilot-fleets:swarmHosts", "pilot-fleets:swarmHosts: unknown namespace 'pilot-fleets' (did you mean "
                                "pilot-fleet:swarmHosts? this program reads pilot-fleet:*, gcp:*, pulumi:*)"),
    ("pilotfleet:alertThreshold", "pilotfleet:alertThreshold: unknown namespace 'pilotfleet' (did you mean "
                                  "pilot-fleet:alertThreshold?"),
    ("aws:region", "aws:region: unknown namespace 'aws' (this program reads"),
])
def test_a_key_under_an_unknown_namespace_is_an_error(key: str, problem: str) -> None:
    config = load_stack_config("prod")
    config[key] = config.pop("pilot-fleet:swarmHosts") if key.endswith("swarmHosts") else "0.5"
    problems = problems_for(config)
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_a_fleet_without_agents_is_an_error() -> None:
    config = load_stack_config("prod")
    del config["pilot-fleet:swarmHosts"]
    assert problems_for(config) == ["pilot-fleet:swarmHosts: the fleet has no agents: declare swarmHosts or "
                                    "swarmPools (a fleet of a rendezvous alone would plan green and verify nothing)"]


def test_config_accepts_exactly_what_the_vms_accept() -> None:
    """`baseUdpPort: 100` used to plan green and stop every swarm host at boot (the script refuses ports below 1024):
    both now read fleet/vm_contract.py's SWARM_ATTRIBUTES."""
    problems = problems_for(prod_with("pilot-fleet:swarmHosts.0.baseUdpPort", 100))
    assert problems == [
        "pilot-fleet:swarmHosts[0].baseUdpPort (swarm-1): Input should be greater than or equal to 1024"]
    too_many = problems_for(prod_with("pilot-fleet:swarmHosts.1.spawnParallelism", 201))
    assert too_many == [
        "pilot-fleet:swarmHosts[1].spawnParallelism (swarm-2): Input should be less than or equal to 200"]


def test_a_pool_written_with_the_old_per_vm_name_is_told_the_new_one() -> None:
    """Schema 2: `targetAgents` is agents per VM on hosts and pools alike; `agentsPerVm` is refused with the hint."""
    config = copy.deepcopy(load_stack_config("scale"))
    pool = config["pilot-fleet:swarmPools"][0]
    pool["agentsPerVm"] = pool.pop("targetAgents")
    assert problems_for(config) == [
        "pilot-fleet:swarmPools[0]: agentsPerVm was renamed targetAgents (agents per VM, the same name as on "
        "swarmHosts; see 'Stack outputs' in README.md, schema version 2)"]
    cfg = parse_stack("scale")
    assert cfg.swarm_pools[0].target_agents == 3847 and cfg.swarm_pools[0].total_agents == 13 * 3847
    assert cfg.expected_agents == 13 * 3847


@pytest.mark.fast
def test_a_cold_start_over_its_budget_is_told_what_the_budget_takes() -> None:
    """prod's host of 5,000 agents with rounds of 10 and 2 addresses cannot meet 4 minutes: the error names the
    rounds and the addresses that would, and taking its advice gives a config that is accepted. Without agentReach
    vpc the addresses need that first."""
    config = prod_with("pilot-fleet:swarmHosts.1.spawnParallelism", 10)
    host = config["pilot-fleet:swarmHosts"][1]
    host["registrationAddresses"] = 2
    [problem] = [p for p in problems_for(config) if "cold start" in p]
    assert "swarmHosts[1]" in problem and "5,000 agents" in problem, problem
    advice = re.search(r"spawnParallelism (\d+), and registrationAddresses (\d+) ", problem)
    assert advice, problem
    host["spawnParallelism"], host["registrationAddresses"] = int(advice[1]), int(advice[2])
    assert host["spawnParallelism"] > 10 and host["registrationAddresses"] > 2
    parse_flat_config({k: wire_value(v) for k, v in config.items()})  # the advice meets the budget
    config["pilot-fleet:agentReach"] = "internet"
    host.pop("registrationAddresses")
    problems = problems_for(config)
    assert any(f"agentReach: vpc, for {advice[2]} registration addresses" in p for p in problems), problems
