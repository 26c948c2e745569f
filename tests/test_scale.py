"""Past three VMs: swarm pools on managed instance groups, the rendezvous failover on its regional store disk, the
capacity planner and the 50,000-agent stack it wrote."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.capacity.sizing import Assumptions, recommend, vm_capacity
from fleet.facts import pilot
from fleet.facts.machine_types import lookup
from fleet.policy_runner.analyzer import running_pack
from tests.conftest import REPO, run_fleet
from tests.policy_harness import PACK_DIR, directly, over_grpc, resources_from_plan

REGION_MIG = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
FIREWALL = "gcp:compute/firewall:Firewall"
INSTANCE = "gcp:compute/instance:Instance"
POOL = "scale-e2-highmem-8"


@pytest.fixture(scope="module")
def scale(planned: Any) -> dict[str, Any]:
    return planned("scale")


def of_type(plan: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {r["name"]: r["inputs"] for r in plan["resources"] if r["type"] == type_}


def test_scale_stack_plans_with_no_mandatory_violation_and_50k_agents(scale: dict[str, Any]) -> None:
    assert not [v for v in scale["policy"]["violations"] if v["enforcement"] == "mandatory"]
    assert scale["outputs"]["expectedAgents"] >= 50_000
    assert "pools-heal-safely" in scale["policy"]["policies"]


def test_pool_is_a_template_and_a_regional_group_that_heals_on_the_supervisor(scale: dict[str, Any]) -> None:
    template = next(iter(of_type(scale, TEMPLATE).values()))
    assert template["namePrefix"] == f"{POOL}-"
    md = template["metadata"]
    assert md["pilot-role"] == "swarm" and md["pilot-target-agents"] == "3847"
    assert not set(md) & {"startup-script", "startup-script-url", "user-data"}
    assert template["shieldedInstanceConfig"]["enableSecureBoot"] is True
    assert template["labels"]["pilot-pool"] == POOL
    group = of_type(scale, REGION_MIG)[POOL]
    assert group["distributionPolicyZones"] == ["us-central1-a", "us-central1-b", "us-central1-c"]
    assert group["targetSize"] == 13 and group["baseInstanceName"] == POOL
    assert group["autoHealingPolicies"]["initialDelaySec"] == pilot.AUTOHEALING_INITIAL_DELAY_SECONDS
    assert group["autoHealingPolicies"]["healthCheck"].endswith(f"healthChecks/{POOL}-health")
    # metadata-only changes reach the VMs in place (their supervisors converge live); others recreate them under
    # their names, one zone's worth at a time, with each VM's agent state disk kept (stateful, never deleted)
    assert group["updatePolicy"] == {"type": "PROACTIVE", "minimalAction": "REFRESH",
                                     "mostDisruptiveAllowedAction": "REPLACE", "replacementMethod": "RECREATE",
                                     "maxSurgeFixed": 0, "maxUnavailableFixed": 3,
                                     "instanceRedistributionType": "NONE"}
    assert group["statefulDisks"] == [{"deviceName": pilot.STATE_DEVICE, "deleteRule": "NEVER"}]
    assert template["disks"][1] == {"deviceName": pilot.STATE_DEVICE, "boot": False, "autoDelete": False,
                                    "diskSizeGb": 10, "diskType": "pd-balanced"}
    assert md["pilot-state-device"] == pilot.STATE_DEVICE
    health = of_type(scale, "gcp:compute/healthCheck:HealthCheck")[f"{POOL}-health"]
    assert health["httpHealthCheck"] == {"port": 8081, "requestPath": "/healthz"}
    rule = of_type(scale, FIREWALL)[f"{POOL}-allow-health-checks"]
    assert rule["sourceRanges"] == ["35.191.0.0/16", "130.211.0.0/22"]
    assert rule["allows"] == [{"protocol": "tcp", "ports": ["8081"]}] and rule["targetTags"] == template["tags"][1:]
    assert of_type(scale, FIREWALL)[f"{POOL}-allow-agents"]["allows"][0]["ports"] == ["10000-13846"]


@pytest.mark.plan
def test_failover_is_one_config_value_that_moves_the_vm_to_the_store_and_the_address(program_with_stack: Any) -> None:
    """The failover in SCALING.md is `activeZone` changed and `pulumi up`: the plan after it recreates the same VM
    in the other zone (deleted first: fenced, and the address and disk let go), on the same regional store disk
    (force-attached) with the same reserved address; nothing else changes."""
    config = yaml.safe_load((REPO / "Pulumi.scale.yaml").read_text())["config"]
    program = program_with_stack(config)

    def plan_as_test(stack_config: dict[str, Any]) -> dict[str, Any]:
        (program / "Pulumi.test.yaml").write_text(yaml.safe_dump({"config": stack_config}))
        result = run_fleet("plan", "--program", str(program), "--stack", "test", "--json", str(program / "p.json"))
        assert result.returncode == 0, result.stdout + result.stderr
        return dict(json.loads((program / "p.json").read_text()))

    before = plan_as_test(config)  # the same stack name before and after: labels and names stay comparable
    config["pilot-fleet:rendezvous"]["activeZone"] = "us-central1-b"
    after = plan_as_test(config)
    out = program / "p.json"
    before_vm, after_vm = (of_type(plan, INSTANCE)["pilot-rendezvous-scale"] for plan in (before, after))
    store = of_type(before, "gcp:compute/regionDisk:RegionDisk")["pilot-rendezvous-scale-store"]
    assert store["replicaZones"] == ["us-central1-a", "us-central1-b"] and store["region"] == "us-central1"
    assert "pilot-rendezvous-scale-store" not in of_type(before, "gcp:compute/disk:Disk")
    assert (before_vm["zone"], after_vm["zone"]) == ("us-central1-a", "us-central1-b")
    for vm in (before_vm, after_vm):
        [disk] = vm["attachedDisks"]
        assert disk["deviceName"] == "pilot-store" and disk["forceAttach"] is True
        assert disk["source"].endswith("/regions/us-central1/disks/pilot-rendezvous-scale-store")
    assert before_vm["networkInterfaces"][0]["accessConfigs"][0]["natIp"] == before["outputs"]["rendezvousIp"]
    assert after_vm["networkInterfaces"][0]["accessConfigs"][0]["natIp"] == after["outputs"]["rendezvousIp"]
    assert after["outputs"]["rendezvousIp"] == before["outputs"]["rendezvousIp"]  # the same reserved address
    options = next(r["options"] for r in after["resources"] if r["name"] == "pilot-rendezvous-scale"
                   and r["type"] == INSTANCE)
    assert options["deleteBeforeReplace"] is True
    # nothing else moves: every other resource plans with the same inputs
    def inputs(plan: dict[str, Any]) -> dict[str, Any]:
        return {(r["type"], r["name"]): r["inputs"] for r in plan["resources"]
                if not (r["type"] == INSTANCE and r["name"] == "pilot-rendezvous-scale")}
    changed = [key for key, value in inputs(after).items() if inputs(before).get(key) != value]
    assert changed == [], changed
    assert before["outputs"]["rendezvousStoreZones"] == ["us-central1-a", "us-central1-b"]
    # no VM asks for -standby replication (rendezvous-keeps-its-registry), and the old key is refused
    assert not any("pilot-standby-of" in (r["inputs"].get("metadata") or {}) for r in before["resources"])
    config["pilot-fleet:rendezvous"]["standby"] = {"zone": "us-central1-b"}
    (out.parent / "Pulumi.test.yaml").write_text(yaml.safe_dump({"config": config}))
    refused = run_fleet("plan", "--program", str(out.parent), "--stack", "test")
    assert refused.returncode == 2 and "standby was replaced by failoverZone" in refused.stdout + refused.stderr


def test_a_vm_relying_on_standby_replication_is_rejected(stub: Any, scale: dict[str, Any]) -> None:
    resources = resources_from_plan(scale)
    vm = next(r for r in resources if r["type"] == INSTANCE and r["name"] == "pilot-rendezvous-scale")
    vm["inputs"]["metadata"]["pilot-standby-of"] = "10.20.0.2:9000"
    expected = {("rendezvous-keeps-its-registry", "pilot-rendezvous-scale")}
    assert directly(resources) == expected == over_grpc(stub, resources)


@pytest.fixture(scope="module")
def stub() -> Iterator[Any]:
    with running_pack(PACK_DIR) as analyzer:
        yield analyzer


def _changed(scale: dict[str, Any], change: Any) -> list[dict[str, Any]]:
    resources = resources_from_plan(scale)
    change(resources)
    return resources


def _spot(resources: list[dict[str, Any]]) -> None:
    next(r for r in resources if r["type"] == TEMPLATE)["inputs"]["scheduling"] = {
        "provisioningModel": "SPOT", "preemptible": True, "automaticRestart": False,
        "onHostMaintenance": "TERMINATE", "instanceTerminationAction": "STOP"}


def _group(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r["inputs"] for r in resources if r["type"] == REGION_MIG)


POOL_CASES = {
    "no autohealing": (lambda rs: _group(rs).pop("autoHealingPolicies"), {("pools-heal-safely", POOL)}),
    "autohealing after 60 s": (lambda rs: _group(rs)["autoHealingPolicies"].update(initialDelaySec=60),
                               {("pools-heal-safely", POOL)}),
    "every VM at once": (lambda rs: _group(rs)["updatePolicy"].update(maxUnavailableFixed=13),
                         {("pools-heal-safely", POOL)}),
    "health checkers shut out": (
        lambda rs: rs.remove(next(r for r in rs if r["name"] == f"{POOL}-allow-health-checks")),
        {("pools-heal-safely", POOL)}),
    "no stateful agent disk": (lambda rs: _group(rs).pop("statefulDisks"), {("pools-keep-agent-state", POOL)}),
    "agent disk deleted with its VM": (
        lambda rs: _group(rs)["statefulDisks"][0].update(deleteRule="ON_PERMANENT_INSTANCE_DELETION"),
        {("pools-keep-agent-state", POOL)}),
    "template without its state device": (
        lambda rs: next(r for r in rs if r["type"] == TEMPLATE)["inputs"]["metadata"].pop("pilot-state-device"),
        {("pools-keep-agent-state", POOL)}),
    "template without the state disk": (
        lambda rs: next(r for r in rs if r["type"] == TEMPLATE)["inputs"]["disks"].pop(1),
        {("pools-keep-agent-state", POOL)}),
    # what the group's VMs finally see: its all-instances config and per-instance configs override the template
    "group config raises every VM's target": (
        lambda rs: _group(rs).update(allInstancesConfig={"metadata": {"pilot-target-agents": "5000"}}),
        {("agents-fit-memory", POOL), ("pilot-ports-open", POOL)}),
    "per-instance config raises one VM's target": (
        lambda rs: rs.append({"urn": "urn:pulumi:test::pilot-fleet::gcp:compute/regionPerInstanceConfig:"
                                     "RegionPerInstanceConfig::vm-7",
                              "type": "gcp:compute/regionPerInstanceConfig:RegionPerInstanceConfig", "name": "vm-7",
                              "inputs": {"regionInstanceGroupManager": POOL, "name": "vm-7",
                                         "preservedState": {"metadata": {"pilot-target-agents": "5000"}}},
                              "parent": None}),
        {("agents-fit-memory", "vm-7"), ("pilot-ports-open", "vm-7")}),
    "template with a startup-script": (
        lambda rs: next(r for r in rs if r["type"] == TEMPLATE)["inputs"]["metadata"].update(
            {"startup-script": "echo ghost"}),
        {("no-instance-startup-scripts", POOL)}),
    # Spot: the group keeps each VM's agent disk, so a preempted VM comes back as its identities; a fleet that is
    # all spot has no floor (an advisory)
    "the pool on Spot VMs": (lambda rs: _spot(rs), {("spot-has-on-demand-floor", "stack")}),
    "the pool on Spot VMs without its stateful disk": (
        lambda rs: (_spot(rs), _group(rs).pop("statefulDisks")),
        {("pools-keep-agent-state", POOL), ("spot-keeps-identities", POOL), ("spot-has-on-demand-floor", "stack")}),
    "template over its memory": (
        lambda rs: next(r for r in rs if r["type"] == TEMPLATE)["inputs"]["metadata"].update(
            {"pilot-target-agents": "5000"}),
        {("agents-fit-memory", POOL), ("pilot-ports-open", POOL)}),
}


def test_scale_baseline_is_compliant(stub: Any, scale: dict[str, Any]) -> None:
    assert directly(resources_from_plan(scale)) == set() == over_grpc(stub, resources_from_plan(scale))


@pytest.mark.parametrize("case", list(POOL_CASES))
def test_pool_rules_one_change_each(stub: Any, scale: dict[str, Any], case: str) -> None:
    change, expected = POOL_CASES[case]
    resources = _changed(scale, change)
    assert directly(copy.deepcopy(resources)) == expected
    assert over_grpc(stub, resources) == expected


def test_planner_binding_limits_and_cost() -> None:
    a = Assumptions()
    highmem16 = vm_capacity(lookup("e2-highmem-16"), a)  # type: ignore[arg-type]
    assert (highmem16.agents, highmem16.binding) == (8000, "memory")  # (131,072 - 3,072) / (10 x 1.6)
    assert highmem16.limits["UDP ports"] == 32768 - 10000
    assert highmem16.limits["PIDs"] == 4194304 // 8 and highmem16.limits["file descriptors"] == 2097152 // 15
    ports_bound = vm_capacity(lookup("n2-highmem-128"), a)  # type: ignore[arg-type]
    assert ports_bound.binding == "UDP ports" and ports_bound.agents == 22768
    fleet = recommend(50_000, a)
    assert fleet.agents >= 50_000 and all(line.target_agents <= 5_000 for line in fleet.lines)  # 10% share
    assert fleet.per_thousand == pytest.approx(fleet.monthly / fleet.agents * 1000)
    burst = recommend(50_000, Assumptions(burst_connections=800))  # the seed's burst: 800 x 4 MB more per VM
    assert burst.lines[0].capacity.limits["memory"] < vm_capacity(burst.lines[0].capacity.machine, a).limits["memory"]
    assert burst.monthly >= fleet.monthly


def test_capacity_compare_prod_prints_both_costs_per_1000() -> None:
    result = run_fleet("capacity", "--agents", "9500", "--compare-stack", "prod")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "per 1,000 agents a month" in line
             and "on Spot" not in line]  # the seed's VMs on Spot: tests/test_spot_pricing.py
    assert len(lines) == 2 and lines[0].startswith("recommended for 9,500 agents") and lines[1].startswith("stack prod")
    assert "  n2d-highcpu-128         1      5,000" in result.stdout
    # the seed's VMs (391 + 2,914 + 196 a month) and their boot and agent state disks (3 x 30 GB x $0.10)
    assert "$3,510 a month, $369.49 per 1,000 agents" in lines[1]


@pytest.mark.plan
def test_write_stack_writes_a_stack_the_program_plans(tmp_path: Path) -> None:
    for name in ("Pulumi.yaml", "__main__.py", "fleet", "startup"):
        (tmp_path / name).symlink_to(REPO / name)
    result = run_fleet("capacity", "--agents", "20000", "--write-stack", "big", "--program", str(tmp_path))
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((tmp_path / "Pulumi.big.yaml").read_text())["config"]
    assert config["pilot-fleet:swarmPools"][0]["size"] * config["pilot-fleet:swarmPools"][0]["targetAgents"] >= 20000
    out = tmp_path / "plan.json"
    planned = run_fleet("plan", "--program", str(tmp_path), "--stack", "big", "--json", str(out))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert json.loads(out.read_text())["outputs"]["expectedAgents"] >= 20000
    again = run_fleet("capacity", "--agents", "20000", "--write-stack", "big", "--program", str(tmp_path))
    assert again.returncode == 2 and "exists; pass --force to replace it" in again.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--agents", "0"], "argument --agents: '0' must be positive"),
    (["--agents", "100", "--region", "mars-east1"], "no prices for region 'mars-east1'"),
    (["--agents", "100", "--compare-stack", "nosuch"], "Pulumi.nosuch.yaml"),
    (["--agents", "100", "--write-stack", "Bad_Name"], "stack name 'Bad_Name'"),
])
def test_capacity_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = run_fleet("capacity", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
