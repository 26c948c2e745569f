"""The pack as reviewers use it: its analyzer's info, the shipped stacks, and bad programs rejected by name."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from google.protobuf import empty_pb2

from fleet.policy_runner.analyzer import running_pack
from tests.conftest import REPO, load_stack_config, run_fleet
from tests.policy_harness import PACK_DIR

MANDATORY = {"no-instance-startup-scripts", "one-project-startup-script", "startup-script-guarded",
             "agents-fit-memory", "pilot-ports-open", "pools-heal-safely", "pools-keep-agent-state",
             "rendezvous-keeps-its-registry", "rendezvous-store-snapshots", "types-the-pack-judges", "no-private-keys",
             "spot-keeps-identities"}
ADVISORY = {"dashboard-not-public", "no-public-ssh-rdp", "shielded-vm", "no-default-service-account",
            "no-cloud-platform-scope", "block-project-ssh-keys", "os-login", "serial-port-off",
            "registry-not-plaintext-over-internet", "spot-has-on-demand-floor",
            # scanner parity (policies/fleet_policies/scanner_parity.py)
            "os-login-not-overridden", "no-ip-forwarding", "no-public-ip", "disk-customer-key", "no-default-network",
            "no-all-ports-open",
            # values not known at preview (policies/fleet_policies/preview.py)
            "preview-unknowns"}


def test_analyzer_info_lists_every_rule_with_its_level() -> None:
    with running_pack(PACK_DIR) as stub:
        info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    levels = {p.name: p.enforcementLevel for p in info.policies}
    assert info.name == "pilot-fleet-policies"
    assert {n for n, level in levels.items() if level == 1} == MANDATORY  # MANDATORY
    assert {n for n, level in levels.items() if level == 0} == ADVISORY  # ADVISORY
    schema = {p.name: set(p.configSchema.properties) for p in info.policies}
    assert schema["agents-fit-memory"] == {"agentMemoryMb", "headroomPercent", "osReserveMb"}


@pytest.mark.parametrize("mode", ["preview", "up"])
@pytest.mark.parametrize("stack", ["prod", "dev", "scale", "spot"])
def test_shipped_stacks_have_no_mandatory_violations(stack: str, mode: str, tmp_path) -> None:
    out = tmp_path / "plan.json"
    result = run_fleet("plan", "--stack", stack, "--json", str(out), *(["--up"] if mode == "up" else []))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 mandatory" in result.stdout
    policy = json.loads(out.read_text())["policy"]
    assert [v for v in policy["violations"] if v["enforcement"] == "mandatory"] == []
    assert set(policy["policies"]) == MANDATORY | ADVISORY


@pytest.mark.parametrize(("scenario", "policy", "resource"), [
    ("instance_startup_script", "no-instance-startup-scripts", "gcp:compute:Instance: ghost"),
    ("template_startup_url", "no-instance-startup-scripts", "gcp:compute:InstanceTemplate: swarm-template"),
    ("project_metadata", "one-project-startup-script", "gcp:compute:ProjectMetadata: project-metadata"),
    ("swarm_over_budget", "agents-fit-memory", "gcp:compute:Instance: swarm-3"),
    # one per class of what the pack used to miss: effective metadata, firewall semantics, facts from resources
    ("zonal_startup_script", "one-project-startup-script", "gcp:compute:InstanceSettings: zone-a-settings"),
    ("firewall_deny_registry", "pilot-ports-open", "gcp:compute:Instance: pilot-rendezvous"),
    ("rendezvous_port_moved", "pilot-ports-open", "gcp:compute:Instance: rendezvous"),
    ("guards_after_exit", "startup-script-guarded", "gcp:compute:ProjectMetadataItem: startup-script"),
    ("store_without_snapshots", "rendezvous-store-snapshots", "gcp:compute:Disk: registry-store"),
    # the guard rule judges effect: a lock and marker at a command's output, tuning in a function nothing calls
    ("guard_computed_lock", "startup-script-guarded", "gcp:compute:ProjectMetadataItem: startup-script"),
    ("guard_tuning_never_called", "startup-script-guarded", "gcp:compute:ProjectMetadataItem: startup-script"),
])
def test_scenario_programs_are_rejected_by_name(scenario: str, policy: str, resource: str, tmp_path) -> None:
    out = tmp_path / "plan.json"
    result = run_fleet("plan", "--program", str(REPO / "tests" / "scenarios" / scenario), "--stack", "test",
                       "--json", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"- [mandatory]  {policy}  ({resource})" in result.stdout
    violations = json.loads(out.read_text())["policy"]["violations"]
    assert any(v["policy"] == policy and v["enforcement"] == "mandatory" and v["urn"].endswith(resource.split(": ")[1])
               for v in violations)


def test_a_registry_closed_to_the_swarms_registration_addresses_is_rejected(tmp_path) -> None:
    """tests/scenarios/registry_closed_to_registration_addresses: agents register from their VMs' internal
    addresses and alias IP ranges (agentReach vpc); a deny of the registry port from that subnet leaves every swarm
    VM without a way to register, whatever the policy's own agentSourceRanges say."""
    out = tmp_path / "plan.json"
    scenario = REPO / "tests" / "scenarios" / "registry_closed_to_registration_addresses"
    result = run_fleet("plan", "--program", str(scenario), "--stack", "test", "--json", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    messages = [v["message"] for v in json.loads(out.read_text())["policy"]["violations"]
                if v["policy"] == "pilot-ports-open"]
    for vm in ("swarm-1", "swarm-2", "swarm-3"):
        assert any(f"not open to 10.20.0.0/20, where swarm VM {vm}'s agents register from" in m for m in messages), \
            messages


def _scenario_violations(name: str, tmp_path, *extra: str) -> list[dict[str, str]]:
    out = tmp_path / "plan.json"
    run_fleet("plan", "--program", str(REPO / "tests" / "scenarios" / name), "--stack", "test", "--json", str(out),
              *extra)
    return list(json.loads(out.read_text())["policy"]["violations"])


def _named(violations: list[dict[str, str]], enforcement: str) -> set[tuple[str, str]]:
    return {(v["policy"], v["urn"].rsplit("::", 1)[-1]) for v in violations if v["enforcement"] == enforcement
            and v["policy"] not in ("disk-customer-key", "no-public-ip", "no-default-network", "shielded-vm",
                                    "no-default-service-account", "block-project-ssh-keys", "os-login",
                                    "serial-port-off", "no-cloud-platform-scope", "os-login-not-overridden",
                                    "no-all-ports-open", "dashboard-not-public")}


def test_a_value_unknown_at_preview_narrows_a_rule_and_up_judges_it(tmp_path) -> None:
    """tests/scenarios/unknown_at_preview: each trick hidden in a value not known at preview. At preview every
    mandatory rule judges what is known (a forbidden key set at all, the other items, the known firewall rules)
    and preview-unknowns names what it could not; `plan --up` judges the rest on the resolved values."""
    preview = _scenario_violations("unknown_at_preview", tmp_path)
    assert _named(preview, "mandatory") == {
        ("no-instance-startup-scripts", "late-script"), ("one-project-startup-script", "owner"),
        ("pilot-ports-open", "rv-org-denied")}, preview
    assert _named(preview, "advisory") == {
        ("preview-unknowns", "maybe-script"), ("preview-unknowns", "startup-script"),
        ("preview-unknowns", "rv-late-project")}, preview
    messages = {v["urn"].rsplit("::", 1)[-1]: v["message"] for v in preview if v["policy"] == "preview-unknowns"}
    assert "its key is not known" in messages["maybe-script"] and "plan --up" in messages["maybe-script"]
    assert "startup-script-guarded did not judge" in messages["startup-script"]
    assert "its project is not known" in messages["rv-late-project"]
    assert not [v for v in preview if "can't run policy" in v["message"]], preview  # no rule switched off
    up = _scenario_violations("unknown_at_preview", tmp_path, "--up")
    assert _named(up, "mandatory") == {
        ("no-instance-startup-scripts", "late-script"), ("one-project-startup-script", "owner"),
        ("one-project-startup-script", "startup-script"), ("one-project-startup-script", "rv-late-project"),
        ("pilot-ports-open", "rv-org-denied"), ("startup-script-guarded", "maybe-script"),
        ("startup-script-guarded", "startup-script")}, up
    assert not [v for v in up if v["policy"] == "preview-unknowns"], up


@pytest.mark.parametrize(("scenario", "policy", "named"), [
    # pools whose names share a prefix, autonamed templates, a canary version, a regional template, a template
    # referenced by its unique self link (not known at preview): each group judged on the templates it runs
    ("pools_paired_by_reference", "pools-keep-agent-state", {"swarm", "swarm-small"}),
    # an instance from a swarm template inherits its metadata; only its machine type is its own
    ("instance_from_template_inherits", "agents-fit-memory", {"swarm-shrunk"}),
    # health checks against the supervisor's port (from the template's metadata), path and protocol, with the
    # API's default port; a regional group's default maxUnavailable (its zones); the legitimate shapes accepted
    ("pool_health_and_defaults", "pools-heal-safely",
     {"wrong-port", "default-port", "tcp-probe", "wrong-path", "regional-default"}),
    ("pool_health_and_defaults", "pools-keep-agent-state", set()),
    # network firewall policies (global, regional) and hierarchical ones, with their order against the VPC rules
    ("firewall_policies", "pilot-ports-open",
     {"rv-deny-first", "rv-regional-deny", "rv-folder-deny", "rv-goto-next-closed"}),
    # a network is a project and a name: a rule on another project's same-named network does not open it; a VM
    # on a Shared VPC subnetwork this stack does not declare is not judged on a guess; a subnetwork is read in the
    # interface's subnetworkProject, and a partial link in the VM's own project
    ("networks_and_projects", "pilot-ports-open", {"rv-other-project", "rv-subnet-project", "rv-partial-closed"}),
    # one startup-script item per project: two projects may each have theirs, a second in one project may not, and
    # a project where a fleet VM runs needs one
    ("networks_and_projects", "one-project-startup-script", {"startup-script-again", "rv-third"}),
    ("networks_and_projects", "preview-unknowns", {"rv-shared-vpc"}),
    # protocols by number ("6", "17") and sources by network tag (the VMs that carry it: a quarantine of a VM
    # outside the fleet touches no agent, a deny from a swarm VM's tag drops its registrations); one rule's sources
    # together; destination ranges, judged to the safe side
    ("firewall_forms", "pilot-ports-open", {"rv-deny-by-number", "rv-deny-swarm-tag", "rv-allow-elsewhere"}),
    # a machine image carries its source VM's machine type and metadata; a template named by its plain name or a
    # spelled link is the template (no dependency for the engine to record)
    ("machine_images_and_names", "agents-fit-memory", {"clone-small", "from-plain", "from-spelled", "from-partial"}),
    # rules declared inline by a *WithRules policy, and a secure tag bound to a VM by a TagBinding (by reference)
    ("policies_with_rules_and_tags", "pilot-ports-open", {"rv-inline-deny", "rv-tag-denied"}),
    ("policies_with_rules_and_tags", "types-the-pack-judges", {"bulk-tags"}),
])
def test_scenarios_are_judged_on_the_graph(scenario: str, policy: str, named: set[str], tmp_path) -> None:
    """Each scenario program names its bad variants and its legitimate shapes in its docstring: the rule rejects
    exactly the bad ones, paired and placed by reference (templates, health checks, subnetworks, networks with
    their projects, firewall policies with their associations), never by name."""
    violations = _scenario_violations(scenario, tmp_path)
    assert {v["urn"].rsplit("::", 1)[-1] for v in violations if v["policy"] == policy} == named, violations
    assert not [v for v in violations if "can't run policy" in v["message"]], violations  # no unknown blinds a rule


SCANNER_CHECKS = {"os-login-not-overridden": {"oslogin-off"}, "no-ip-forwarding": {"forwarder"},
                  "no-public-ip": {"public"}, "disk-customer-key": {"google-keys"},
                  "no-default-network": {"on-default"}, "no-all-ports-open": {"all-ports", "default-web"}}


def test_the_scanners_checks_are_advisories_with_their_ids(tmp_path) -> None:
    """Scanner parity: each of the six checks (CKV_GCP_34, 36, 40, 38, 27, CKV2_GCP_12) catches its bad variant in
    tests/scenarios/scanner_parity_bad and accepts the legitimate shapes of tests/scenarios/scanner_parity_good."""
    bad = _scenario_violations("scanner_parity_bad", tmp_path)
    found = {policy: {v["urn"].rsplit("::", 1)[-1] for v in bad if v["policy"] == policy}
             for policy in SCANNER_CHECKS}
    assert found == SCANNER_CHECKS, bad
    assert all(v["enforcement"] == "advisory" for v in bad if v["policy"] in SCANNER_CHECKS)
    (tmp_path / "good").mkdir()
    good = _scenario_violations("scanner_parity_good", tmp_path / "good")
    assert [v for v in good if v["policy"] in SCANNER_CHECKS] == []


def test_the_guard_rule_accepts_the_legitimate_shapes_of_its_scenarios() -> None:
    """The two guard scenarios put right: the lock at a fixed path in /run; the tuning function called."""
    sys.path.insert(0, str(PACK_DIR))
    from fleet_policies.guard import missing_guards

    from tests.scenarios.guard_parts import COMPUTED_LOCK, TUNING_NEVER_CALLED

    computed = COMPUTED_LOCK  # tests/scenarios/guard_computed_lock
    assert missing_guards(computed) and missing_guards(computed.replace('"$(mktemp -d)"', '"/run/pilot-fleet"')) == []
    assert missing_guards(computed.replace('"$(mktemp -d)"', '"/var/lib/pilot-fleet"'))  # survives a reboot
    uncalled = TUNING_NEVER_CALLED  # tests/scenarios/guard_tuning_never_called
    assert missing_guards(uncalled)
    assert missing_guards(uncalled.replace("\nstart_agents\n", "\ntune\nstart_agents\n")) == []


def test_a_store_disk_with_its_schedule_attached_by_reference_passes(tmp_path) -> None:
    """tests/scenarios/store_with_snapshots: an autonamed regional store disk and its schedule, paired by reference
    (the scenario's other violations are its own: it declares no firewall and no startup script)."""
    out = tmp_path / "plan.json"
    run_fleet("plan", "--program", str(REPO / "tests" / "scenarios" / "store_with_snapshots"), "--stack", "test",
              "--json", str(out))
    policy = json.loads(out.read_text())["policy"]
    assert "rendezvous-store-snapshots" in policy["policies"]
    assert [v for v in policy["violations"] if v["policy"] == "rendezvous-store-snapshots"] == []


def test_policy_command_and_config_file(tmp_path) -> None:
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"agents-fit-memory": {"agentMemoryMb": 13.4}}))
    result = run_fleet("policy", "--stack", "prod", "--policy-config", str(config))
    assert result.returncode == 1
    assert "- [mandatory]  agents-fit-memory  (gcp:compute:Instance: swarm-3)" in result.stdout
    assert "Plan of stack" not in result.stdout


def test_bad_policy_config_is_one_clear_error(tmp_path) -> None:
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"agents-fit-memory": {"agentMemoryMB": 13.4}}))
    result = run_fleet("policy", "--stack", "dev", "--policy-config", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "policy config for agents-fit-memory: unknown key(s) agentMemoryMB" in result.stderr


def test_a_vm_whose_whole_metadata_is_unknown_at_preview_plans_without_a_crash(tmp_path) -> None:
    """tests/scenarios/unknown_metadata: a metadata map computed from another resource's id. The plan row says
    its inputs are not known yet; each per-resource rule that reads it gets the engine's preview advisory for that
    resource; the stack rules skip only that VM (preview-unknowns names it, the rule and the value) and still reject
    "crowded", a known swarm VM over its memory."""
    out = tmp_path / "plan.json"
    result = run_fleet("plan", "--program", str(REPO / "tests" / "scenarios" / "unknown_metadata"), "--stack", "test",
                       "--json", str(out))
    assert "Traceback" not in result.stdout + result.stderr
    assert "computed        (some inputs are not known until the resources they come from exist)" in result.stdout
    assert ("- [advisory]  no-instance-startup-scripts  (gcp:compute:Instance: computed)" in result.stdout)
    assert "can't be known during preview" in result.stdout
    violations = json.loads(out.read_text())["policy"]["violations"]
    assert not [v for v in violations if not v["urn"]], "no stack-wide can't-run"
    assert {v["urn"].rsplit("::", 1)[-1] for v in violations if v["enforcement"] == "mandatory"} == {"crowded"}
    assert any(v["policy"] == "agents-fit-memory" and v["urn"].endswith("::crowded") for v in violations)
    assert {v["message"].split(": ")[1].split(" did not")[0] for v in violations
            if v["policy"] == "preview-unknowns" and v["urn"].endswith("::computed")} >= {
        "agents-fit-memory", "pilot-ports-open", "rendezvous-store-snapshots"}
    assert result.returncode == 1  # crowded's mandatory violation, not the unknown

def test_a_stack_on_other_rendezvous_ports_is_judged_on_its_own_ports(program_with_stack: Any) -> None:
    """rendezvous.ports moved to 9100/9101: its VM's metadata and firewall say so, and the pack reads them there
    (it used to read the policy config's defaults and report false mandatory violations)."""
    config = load_stack_config("prod")
    config["pilot-fleet:rendezvous"] = {"ports": {"registry": 9100, "beacon": 9101, "dashboard": 3100}}
    program = program_with_stack(config)
    result = run_fleet("plan", "--program", str(program), "--stack", "test", "--json", str(program / "p.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads((program / "p.json").read_text())
    assert not [v for v in plan["policy"]["violations"] if v["enforcement"] == "mandatory"]
    assert plan["outputs"]["ports"] == {"registry": 9100, "beacon": 9101, "dashboard": 3100, "health": 8081}


SCRIPTS_STRIPPED = {
    "ghost": ["metadata.startup-script: removed", "metadataStartupScript: removed"],
    "swarm-template": ["metadata.startup-script-url: removed"],
    "swarm": ["allInstancesConfig.metadata.user-data: removed"],
    "swarm-0": ["preservedState.metadata.shutdown-script: removed"],
}


def test_instance_scripts_are_stripped_at_the_remediate_level(tmp_path) -> None:
    """tests/scenarios/remediate_instance_scripts: at the default level `no-instance-startup-scripts` rejects every
    VM kind carrying a script; with policies/remediate.json the runner calls the analyzer's Remediate before Analyze,
    as the engine does: the script keys are gone from exactly those four resources, nothing else changed (the
    secret still masked as a secret, the unknown value still unknown), the clean instance untouched, and the rule
    then finds nothing."""
    scenario = str(REPO / "tests" / "scenarios" / "remediate_instance_scripts")
    _ = run_fleet("plan", "--program", scenario, "--stack", "test", "--json", str(tmp_path / "bad.json"))
    bad = json.loads((tmp_path / "bad.json").read_text())["policy"]
    scripts = [v for v in bad["violations"] if v["policy"] == "no-instance-startup-scripts"]
    assert sorted(v["urn"].split("::")[-1] for v in scripts) == sorted(["ghost", "ghost", "swarm-template", "swarm",
                                                                        "swarm-0"])
    assert all(v["enforcement"] == "mandatory" for v in scripts)
    assert bad["remediations"] == []

    result = run_fleet("plan", "--program", scenario, "--stack", "test", "--policy-config",
                       str(REPO / "policies" / "remediate.json"), "--json", str(tmp_path / "good.json"))
    assert "Traceback" not in result.stdout + result.stderr
    plan = json.loads((tmp_path / "good.json").read_text())
    policy = plan["policy"]
    assert policy["policies"]["no-instance-startup-scripts"] == "remediate"
    assert not [v for v in policy["violations"] if v["policy"] == "no-instance-startup-scripts"]
    assert {r["urn"].split("::")[-1]: r["changes"] for r in policy["remediations"]} == SCRIPTS_STRIPPED
    assert "- [remediate]  no-instance-startup-scripts  (gcp:compute:Instance: ghost)\n" \
           "          metadata.startup-script: removed\n          metadataStartupScript: removed" in result.stdout
    inputs = {r["name"]: r for r in plan["resources"]}
    ghost = inputs["ghost"]
    assert ghost["remediatedBy"] == ["no-instance-startup-scripts"] and "metadataStartupScript" not in ghost["inputs"]
    assert ghost["inputs"]["metadata"] == {"enable-oslogin": "TRUE", "ssh-keys": "[secret]",
                                           "peer": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"}  # the engine's unknown
    assert inputs["swarm-0"]["inputs"]["preservedState"] == {"metadata": {"pilot-target-agents": "50"}}
    assert "remediatedBy" not in inputs["clean"] and inputs["clean"]["inputs"]["metadata"] == {"enable-oslogin": "TRUE"}
    # the plan never prints a secret's value, remediated or not (pulumi preview shows "[secret]" too)
    for shown in ((tmp_path / "bad.json").read_text(), (tmp_path / "good.json").read_text(), result.stdout):
        assert "ssh-ed25519" not in shown


def test_a_remediation_keeps_secrets_and_unknowns_over_the_analyzer_protocol() -> None:
    """The pack's Remediate, called as the engine calls it: opt-in (nothing at the shipped mandatory level), and
    the properties it returns keep a secret in the wire's secret form and an unknown as the engine's sentinel."""
    from google.protobuf import json_format, struct_pb2
    from pulumi.runtime.proto import analyzer_pb2

    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "ops:ssh-ed25519 A"}
    unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    props = struct_pb2.Struct()
    props.update({"machineType": "e2-small", "metadataStartupScript": "echo hi",
                  "metadata": {"ssh-keys": secret, "startup-script": "echo hi", "peer": unknown}})
    request = analyzer_pb2.AnalyzeRequest(type="gcp:compute/instance:Instance", properties=props,
                                          urn="urn:pulumi:test::p::gcp:compute/instance:Instance::ghost", name="ghost")
    with running_pack(PACK_DIR) as stub:
        info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
        for level, expected in ((analyzer_pb2.MANDATORY, 0), (analyzer_pb2.REMEDIATE, 1)):
            configure = analyzer_pb2.ConfigureAnalyzerRequest()
            for p in info.policies:
                configure.policyConfig[p.name].enforcementLevel = p.enforcementLevel
            configure.policyConfig["no-instance-startup-scripts"].enforcementLevel = level
            stub.Configure(configure, timeout=30)
            response = stub.Remediate(request, timeout=30)
            assert len(response.remediations) == expected
    [remediation] = response.remediations
    assert remediation.policyName == "no-instance-startup-scripts" and not remediation.diagnostic
    assert json_format.MessageToDict(remediation.properties) == {
        "machineType": "e2-small", "metadata": {"ssh-keys": secret, "peer": unknown}}


def test_a_new_health_check_not_known_at_preview_blinds_nothing(tmp_path) -> None:
    """In a real preview a new health check's id is not known yet: tests/scenarios/pool_health_and_defaults with
    every group's `autoHealingPolicies.healthCheck` unknown. The groups still count as autohealing, each is still
    paired with its check through the engine's propertyDependencies, and pools-heal-safely names the same groups,
    with no stack-wide "can't run"."""
    from fleet.policy_runner.analyzer import analyze_with
    from tests.policy_harness import UNKNOWN, plan_of, resources_from_plan

    out = tmp_path / "plan.json"
    run_fleet("plan", "--program", str(REPO / "tests" / "scenarios" / "pool_health_and_defaults"), "--stack", "test",
              "--json", str(out))
    resources = resources_from_plan(json.loads(out.read_text()))
    groups = [r for r in resources if r["type"].endswith("InstanceGroupManager")]
    for group in groups:
        group["inputs"]["autoHealingPolicies"]["healthCheck"] = UNKNOWN
    with running_pack(PACK_DIR) as stub:
        report = analyze_with(stub, plan_of(resources), PACK_DIR, "test", {})
    assert not [v for v in report.violations if "can't run" in v.message]
    assert {v.urn.rsplit("::", 1)[-1] for v in report.violations if v.policy == "pools-heal-safely"} == {
        "wrong-port", "default-port", "tcp-probe", "wrong-path", "regional-default"}


def test_a_stack_on_an_existing_network_is_still_judged_on_its_rules(program_with_stack: Any) -> None:
    """network.existing: the stack does not declare the network or its subnet, so the VMs name the network on their
    interface beside the subnetwork (Compute Engine would infer it; the pack cannot). Every VM is then judged on the
    firewall rules of that network, none skipped as on an unknown network: a registry opened only to the VPC
    (rendezvous.agentSourceRanges 10.0.0.0/8) is rejected against the policy's 0.0.0.0/0. prod's own VMs are
    unchanged."""
    config = load_stack_config("prod")
    config["pilot-fleet:network"] = {"existing": True}
    config.setdefault("pilot-fleet:rendezvous", {})["agentSourceRanges"] = ["10.0.0.0/8"]
    program = program_with_stack(config)
    result = run_fleet("plan", "--program", str(program), "--stack", "test", "--json", str(program / "p.json"))
    plan = json.loads((program / "p.json").read_text())
    violations = plan["policy"]["violations"]
    assert not [v for v in violations if v["policy"] == "preview-unknowns"]
    assert {(v["policy"], v["urn"].rsplit("::", 1)[-1]) for v in violations if v["enforcement"] == "mandatory"} == {
        ("pilot-ports-open", "pilot-rendezvous")}, violations
    assert result.returncode == 1
    instances = [r for r in plan["resources"] if r["type"] == "gcp:compute/instance:Instance"]
    assert instances and all(r["inputs"]["networkInterfaces"][0]["network"] ==
                             "projects/pilot-fleet-prod/global/networks/pilot-fleet" for r in instances)
    prod = run_fleet("plan", "--stack", "prod", "--json", str(program / "prod.json"))
    assert prod.returncode == 0
    assert all("network" not in r["inputs"]["networkInterfaces"][0] for r in
               json.loads((program / "prod.json").read_text())["resources"]
               if r["type"] == "gcp:compute/instance:Instance")  # prod's VMs stay as they are


@pytest.mark.parametrize("stack", ["prod", "scale"])
def test_a_disk_key_encrypts_every_disk_and_clears_the_advisory(stack: str, program_with_stack: Any) -> None:
    """diskKmsKey: every disk the fleet makes (boot disks of instances and templates, a template's state disk, a
    host's state disk, the registry's store, zonal or regional) carries the key, and the stack plans with no
    violation at all; disk-customer-key finds attached disks' keys on the disks they attach, by reference."""
    key = "projects/kms-project/locations/global/keyRings/fleet/cryptoKeys/disks"
    config = load_stack_config(stack)
    config["pilot-fleet:diskKmsKey"] = key
    program = program_with_stack(config)
    result = run_fleet("plan", "--program", str(program), "--stack", "test", "--json", str(program / "p.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads((program / "p.json").read_text())
    assert plan["policy"]["violations"] == []
    keys = []
    for r in plan["resources"]:
        inputs = r["inputs"]
        if r["type"] == "gcp:compute/instance:Instance":
            keys.append(inputs["bootDisk"]["kmsKeySelfLink"])
        elif r["type"] == "gcp:compute/instanceTemplate:InstanceTemplate":
            keys += [d["diskEncryptionKey"]["kmsKeySelfLink"] for d in inputs["disks"]]
        elif r["type"] == "gcp:compute/disk:Disk":
            keys.append(inputs["diskEncryptionKey"]["kmsKeySelfLink"])
        elif r["type"] == "gcp:compute/regionDisk:RegionDisk":
            keys.append(inputs["diskEncryptionKey"]["kmsKeyName"])
    assert keys and set(keys) == {key}, keys
