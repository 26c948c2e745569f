"""`python -m fleet plan`: exit codes and messages for bad stacks and bad projects, never a traceback."""

from __future__ import annotations

import copy
import json

import yaml

from fleet.facts import pilot
from tests.conftest import REPO, load_stack_config, run_fleet


def assert_clean_error(result, *needles: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert "Plan of stack" not in result.stdout  # nothing half-printed


def test_target_too_large_for_its_machine_exits_2_naming_host_and_budget(program_with_stack) -> None:
    config = copy.deepcopy(load_stack_config("prod"))
    config["pilot-fleet:swarmHosts"][0]["targetAgents"] = 6000
    result = run_fleet("plan", "--stack", "test", "--program", str(program_with_stack(config)))
    assert_clean_error(result, "swarmHosts[0].targetAgents (swarm-1)", "e2-standard-16",
                       "65,536 MB - 3,072 MB OS reserve = 62,464 MB", "at most 3,904 agents")


def test_unknown_stack_lists_the_stacks_there() -> None:
    assert_clean_error(run_fleet("plan", "--stack", "staging"), "no stack file Pulumi.staging.yaml",
                       "stacks here: dev, prod")


def test_not_a_project_directory(tmp_path) -> None:
    assert_clean_error(run_fleet("plan", "--program", str(tmp_path)), "no Pulumi.yaml")


def test_broken_stack_yaml(program_with_stack) -> None:
    program = program_with_stack({})
    (program / "Pulumi.test.yaml").write_text("config: [unclosed\n")
    assert_clean_error(run_fleet("plan", "--stack", "test", "--program", str(program)), "not valid YAML")


def test_program_exception_is_one_line(tmp_path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: broken\nruntime: python\n")
    (tmp_path / "Pulumi.x.yaml").write_text("config: {}\n")
    (tmp_path / "__main__.py").write_text("raise ValueError('no network configured')\n")
    assert_clean_error(run_fleet("plan", "--stack", "x", "--program", str(tmp_path)),
                       "ValueError: no network configured")


def test_json_written_where_asked(tmp_path) -> None:
    result = run_fleet("plan", "--stack", "dev", "--json", str(tmp_path / "p.json"))
    assert result.returncode == 0 and (tmp_path / "p.json").read_text().startswith("{")
    assert "Outputs:" in result.stdout and "gcp:compute:Instance" in result.stdout
    assert str(REPO) not in result.stdout


def test_a_rendezvous_without_an_install_source_does_not_plan(program_with_stack) -> None:
    config = copy.deepcopy(load_stack_config("prod"))
    config["pilot-fleet:rendezvous"]["source"] = None
    result = run_fleet("plan", "--stack", "test", "--program", str(program_with_stack(config)))
    assert_clean_error(result, "pilot-fleet:rendezvous.source: the rendezvous has no install source",
                       "pilot-fleet:rendezvous.release")


def test_the_plan_says_where_the_rendezvous_binary_comes_from(program_with_stack) -> None:
    shipped = run_fleet("plan", "--stack", "prod", "--no-policy")
    row = next(line for line in shipped.stdout.splitlines() if line.strip().startswith("gcp:compute:Instance")
               and "role=rendezvous" in line)
    assert row.endswith("binary=built from github.com/TeoSlayer/pilotprotocol@4c54cc0c7b14 with go 1.27.3")
    config = copy.deepcopy(load_stack_config("prod"))
    url = "https://releases.example.com/pilot-rendezvous"
    config["pilot-fleet:rendezvous"]["release"] = {"url": url, "sha256": "ab" * 32}
    del config["pilot-fleet:rendezvous"]["source"]  # the release instead of the default source pin (both: an error)
    released = run_fleet("plan", "--stack", "test", "--program", str(program_with_stack(config)), "--no-policy")
    assert released.returncode == 0, released.stderr
    assert f"role=rendezvous binary=release {url}" in released.stdout


def test_rendezvous_digest_pins_the_fixture_and_refuses_a_non_archive(tmp_path) -> None:
    from fleet.facts.rendezvous_build import build_table
    from testbed.rendezvous_source import require_archive

    result = run_fleet("rendezvous-digest", str(require_archive()))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == build_table().sources[build_table().default_source].tree_sha256
    bad = tmp_path / "notes.txt"
    bad.write_text("not an archive\n")
    refused = run_fleet("rendezvous-digest", str(bad))
    assert refused.returncode == 2 and refused.stderr == f"error: {bad}: not a tar archive (gzip, bzip2, xz or plain)\n"


def test_the_same_stack_plans_byte_identically(tmp_path) -> None:
    """Stand-in addresses come from resource names, not from the order the engine happens to register them in."""
    texts, documents = [], []
    for run in range(2):
        out = tmp_path / f"plan-{run}.json"
        result = run_fleet("plan", "--stack", "prod", "--json", str(out))
        assert result.returncode == 0, result.stderr
        texts.append(result.stdout.replace(str(out), "PLAN.json"))
        documents.append(out.read_bytes())
    assert texts[0] == texts[1] and documents[0] == documents[1]


def test_pool_and_firewall_rows_show_their_key_inputs() -> None:
    result = run_fleet("plan", "--stack", "scale", "--no-policy")
    assert result.returncode == 0, result.stderr
    rows = [row for line in result.stdout.splitlines() if line.lstrip().startswith("gcp:compute:")
            for row in [line.split(None, 2)] if len(row) == 3]
    by_type = {(kind.removeprefix("gcp:compute:"), name): inputs for kind, name, inputs in rows}
    group = by_type[("RegionInstanceGroupManager", "scale-e2-highmem-8")]
    assert group == ("size=13 zones=us-central1-a,us-central1-b,us-central1-c (13 x 3847 agents) "
                     "autohealing after 1800 s, update REFRESH..REPLACE maxSurge=0 maxUnavailable=3, "
                     "stateful disks pilot-agents-state(NEVER)")
    assert by_type[("InstanceTemplate", "scale-e2-highmem-8")] == (
        "e2-highmem-8 registration-addresses=27 role=swarm target-agents=3847 version=1.18.0 alias-ip=/27")
    assert by_type[("HealthCheck", "scale-e2-highmem-8-health")] == "http :8081/healthz every 30 s"
    assert by_type[("RegionDisk", "pilot-rendezvous-scale-store")] == (
        "10 GB pd-balanced us-central1 replicated in us-central1-a,us-central1-b")


def test_starting_the_registry_fresh_is_one_config_value_that_reaches_the_rendezvous(program_with_stack) -> None:
    """`rendezvous.startFresh: true` writes `pilot-registry-start-fresh` into the rendezvous' metadata (its unit's
    store check then starts an empty registry on purpose); by default the key is not there at all."""
    import json

    import yaml

    from fleet.vm_contract import MetadataKey

    config = copy.deepcopy(load_stack_config("prod"))
    program = program_with_stack(config)

    def rendezvous_metadata() -> dict:
        out = program / "plan.json"
        result = run_fleet("plan", "--stack", "test", "--program", str(program), "--json", str(out))
        assert result.returncode == 0, result.stderr
        vm = next(r for r in json.loads(out.read_text())["resources"] if r["type"] == "gcp:compute/instance:Instance"
                  and r["inputs"]["metadata"].get(MetadataKey.ROLE) == "rendezvous")
        return vm["inputs"]["metadata"]

    assert MetadataKey.REGISTRY_START_FRESH not in rendezvous_metadata()
    config["pilot-fleet:rendezvous"]["startFresh"] = True
    (program / "Pulumi.test.yaml").write_text(yaml.safe_dump({"config": config}))
    assert rendezvous_metadata()[MetadataKey.REGISTRY_START_FRESH] == "true"


def test_recreating_the_store_disk_from_a_snapshot_is_one_config_value(program_with_stack) -> None:
    """`rendezvous.storeFromSnapshot` recreates the store disk from that snapshot, under a name of its own (so the
    new disk is created before the old one goes), and the rendezvous VM is replaced with it (replaceOnChanges on
    its attached disks: a new VM boots and mounts the new disk). The schedule stays attached to the new disk. Plan
    only: what Compute Engine does with it is not exercised here (SCALING.md)."""
    import json

    config = copy.deepcopy(load_stack_config("prod"))
    config["pilot-fleet:rendezvous"]["storeFromSnapshot"] = "pilot-rendezvous-store-20261201"
    program = program_with_stack(config)
    out = program / "plan.json"
    result = run_fleet("plan", "--stack", "test", "--program", str(program), "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 mandatory" in result.stdout
    resources = json.loads(out.read_text())["resources"]
    disk = next(r for r in resources if r["type"] == "gcp:compute/disk:Disk" and r["name"] == "pilot-rendezvous-store")
    assert disk["inputs"]["snapshot"] == "pilot-rendezvous-store-20261201"
    assert disk["inputs"]["name"].startswith("pilot-rendezvous-store-") and len(disk["inputs"]["name"]) == 31
    attachment = next(r for r in resources if r["type"].endswith("diskResourcePolicyAttachment:"
                                                                 "DiskResourcePolicyAttachment"))
    assert attachment["inputs"]["disk"] == disk["inputs"]["name"]
    vm = next(r for r in resources if r["type"] == "gcp:compute/instance:Instance" and r["name"] == "pilot-rendezvous")
    assert vm["options"]["replaceOnChanges"] == ["attachedDisks"] and vm["options"]["deleteBeforeReplace"]
    config["pilot-fleet:rendezvous"]["storeFromSnapshot"] = "not a snapshot"
    import yaml

    (program / "Pulumi.test.yaml").write_text(yaml.safe_dump({"config": config}))
    assert_clean_error(run_fleet("plan", "--stack", "test", "--program", str(program)), "storeFromSnapshot")


def test_a_pool_or_host_runs_its_own_daemon_version_for_a_canary_and_a_bad_one_is_named(program_with_stack,
                                                                                          tmp_path) -> None:
    """pilotVersion per host or pool: the canary host's VM is planned with its release, the others with the
    fleet's; a version with no known wheels is one error naming that host's key."""
    config = copy.deepcopy(load_stack_config("prod"))
    config["pilot-fleet:swarmHosts"][0]["pilotVersion"] = "1.17.0"
    out, program = tmp_path / "plan.json", program_with_stack(config)
    result = run_fleet("plan", "--stack", "test", "--program", str(program), "--no-policy", "--json", str(out))
    assert result.returncode == 0, result.stderr
    versions = {r["name"]: r["inputs"]["metadata"]["pilot-version"] for r in json.loads(out.read_text())["resources"]
                if r["type"] == "gcp:compute/instance:Instance" and "pilot-version" in r["inputs"].get("metadata", {})
                and r["inputs"]["metadata"].get("pilot-role") == "swarm"}
    assert versions == {"swarm-1": "1.17.0", "swarm-2": pilot.PILOT_VERSION, "swarm-3": pilot.PILOT_VERSION}
    config["pilot-fleet:swarmHosts"][0]["pilotVersion"] = "0.0.1"
    (program / "Pulumi.test.yaml").write_text(yaml.safe_dump({"config": config}))
    refused = run_fleet("plan", "--stack", "test", "--program", str(program), "--no-policy")
    assert_clean_error(refused, "pilot-fleet:swarmHosts[0].pilotVersion: no pilot-daemon wheel known for '0.0.1'")


def test_the_plan_names_the_vms_a_change_reaches_only_at_their_next_boot(program_with_stack, tmp_path) -> None:
    """A higher target re-sizes the VM's registration addresses (its alias IP range), which its supervisor cannot
    apply live: `plan --compare` names that VM and the values, and only it; a file that is no plan is one line."""
    old = tmp_path / "old.json"
    assert run_fleet("plan", "--stack", "prod", "--no-policy", "--json", str(old)).returncode == 0
    config = copy.deepcopy(load_stack_config("prod"))
    config["pilot-fleet:swarmHosts"][0]["targetAgents"] = 3800
    program = program_with_stack(config)
    result = run_fleet("plan", "--stack", "test", "--program", str(program), "--no-policy", "--compare", str(old))
    assert result.returncode == 0, result.stderr
    report = result.stdout.split("\nNext boot only")[1].splitlines()
    assert len(report) == 2 and report[1].startswith("    swarm-1: pilot-registration-addresses "), report
    assert "; alias IP range /" in report[1]
    unchanged = run_fleet("plan", "--stack", "prod", "--no-policy", "--compare", str(old))
    assert "Next boot only (against " in unchanged.stdout and "nothing; every change converges live" in unchanged.stdout
    (tmp_path / "notes.json").write_text('{"resources": 3}')
    assert_clean_error(run_fleet("plan", "--stack", "prod", "--compare", str(tmp_path / "notes.json")),
                       "notes.json: not a plan written by `fleet plan --json`")
