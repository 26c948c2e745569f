"""Cloud Monitoring as code and the monitoring example stack, planned offline under the mock engine, and the
Grafana dashboard `fleet monitoring` writes. One definition of each alert and panel renders all of them: the
policies carry the Prometheus rules' expressions and hold times, and every query parses in Prometheus' own promtool
(Debian's prometheus package)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, run_fleet
from tests.test_monitoring import promtool

EXAMPLE = REPO / "examples" / "monitoring"
FLEET_STACK = "organization/pilot-fleet/prod"  # examples/monitoring/Pulumi.prod.yaml's fleetStack
POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
DASHBOARD = "gcp:monitoring/dashboard:Dashboard"


def of_type(plan: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [r for r in plan["resources"] if r["type"] == type_]


def written_monitoring(plan: dict[str, Any], tmp: Path) -> Path:
    outputs = tmp / "outputs.json"
    outputs.write_text(json.dumps(plan["outputs"]))
    result = run_fleet("monitoring", "--outputs", str(outputs), "--out", str(tmp / "m"))
    assert result.returncode == 0, result.stderr
    return tmp / "m"


def rules_of(files: Path) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in yaml.safe_load((files / "pilot-fleet.rules.yml").read_text())["groups"][0]["rules"]}


def assert_policies_match_the_rules(plan: dict[str, Any], rules: dict[str, dict[str, Any]]) -> None:
    policies = {p["inputs"]["conditions"][0]["displayName"]: p["inputs"] for p in of_type(plan, POLICY)}
    assert set(policies) == set(rules)  # one policy per rule
    holds = {"10m": "600s", "15m": "900s", "5m": "300s"}
    for name, rule in rules.items():
        condition = policies[name]["conditions"][0]["conditionPrometheusQueryLanguage"]
        assert condition["query"] == rule["expr"], name
        assert condition["duration"] == holds[rule["for"]], name
        assert condition["alertRule"] == name and condition["ruleGroup"] == "pilot-fleet"
        assert condition["labels"] == {"severity": rule["labels"]["severity"]}
        assert condition["disableMetricValidation"] is True  # the policies come before the first series
        assert policies[name]["severity"] == rule["labels"]["severity"].upper()
        assert policies[name]["combiner"] == "OR"


def mandatory(plan: dict[str, Any]) -> list[dict[str, Any]]:
    policy = plan["policy"]
    return [v for v in policy["violations"] if policy["policies"][v["policy"]] == "mandatory"]


def dashboard_queries(plan: dict[str, Any]) -> list[str]:
    (board,) = of_type(plan, DASHBOARD)
    tiles = json.loads(board["inputs"]["dashboardJson"])["mosaicLayout"]["tiles"]
    return [d["timeSeriesQuery"]["prometheusQuery"] for t in tiles for d in t["widget"]["xyChart"]["dataSets"]]


@pytest.mark.plan
def test_a_fleet_stack_with_cloud_monitoring_holds_a_policy_per_rule_and_the_dashboard(
        planned: Any, tmp_path: Path) -> None:
    """scale asks for it (`monitoring.cloud: true`); prod, dev and spot do not, and declare none."""
    plan = planned("scale")
    assert_policies_match_the_rules(plan, rules_of(written_monitoring(plan, tmp_path)))
    queries = dashboard_queries(plan)
    assert 'sum by (pilot_host) (pilot_agents_running{pilot_fleet="pilot-fleet-scale"})' in queries
    assert 'sum(pilot_nodes_online{pilot_fleet="pilot-fleet-scale"})' in queries  # the registry's own count
    assert not mandatory(plan), mandatory(plan)
    assert not of_type(planned("prod"), POLICY) and not of_type(planned("prod"), DASHBOARD)


@pytest.mark.plan
def test_notification_channels_reach_every_policy(tmp_path: Path) -> None:
    for name in ("Pulumi.yaml", "__main__.py"):
        (tmp_path / name).symlink_to(REPO / name)
    channel = "projects/pilot-fleet-dev/notificationChannels/4242"
    config = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())
    config["config"]["pilot-fleet:monitoring"] = {"cloud": True, "notificationChannels": [channel]}
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(config))
    result = run_fleet("plan", "--stack", "dev", "--program", str(tmp_path), "--no-policy", "--json",
                       str(tmp_path / "plan.json"))
    assert result.returncode == 0, result.stderr
    policies = of_type(json.loads((tmp_path / "plan.json").read_text()), POLICY)
    assert len(policies) == 4 and all(p["inputs"]["notificationChannels"] == [channel] for p in policies)


@pytest.fixture(scope="module")
def prod_outputs(planned: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "prod.json"
    path.write_text(json.dumps(planned("prod")["outputs"]))
    return path


def plan_example(reference: Path, out: Path) -> Any:
    return run_fleet("plan", "--program", str(EXAMPLE), "--stack", "prod", "--stack-reference",
                     f"{FLEET_STACK}={reference}", "--json", str(out))


@pytest.mark.plan
def test_the_monitoring_example_plans_from_a_reference_to_the_prod_stack(
        prod_outputs: Path, planned: Any, tmp_path: Path) -> None:
    """The example reads prod's outputs through pulumi.StackReference (served by the mock engine from the prod
    plan's outputs, a stand-in: the offline plan cannot reach a backend's state) and declares what scale declares."""
    result = plan_example(prod_outputs, tmp_path / "plan.json")
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert_policies_match_the_rules(plan, rules_of(written_monitoring(planned("prod"), tmp_path)))
    assert 'sum(pilot_agents_running{pilot_fleet="pilot-fleet-prod"}) < 9025' in [
        p["inputs"]["conditions"][0]["conditionPrometheusQueryLanguage"]["query"] for p in of_type(plan, POLICY)]
    assert len(dashboard_queries(plan)) == 12  # 7 panels: running and target per host, per pool and fleet-wide, the
    # registry's online and known counts, its (de)registration rates, memory available and agents' RSS per host
    assert not plan["policy"]["violations"], plan["policy"]["violations"]  # a stack without VMs needs no script


@pytest.mark.plan
@pytest.mark.parametrize(("change", "says"), [
    ({"schemaVersion": 3}, "schemaVersion is 3; this version of pilot-fleet reads version 2"),
    ({"schemaVersion": 1}, "schemaVersion is 1, written before"),
    ({"expectedAgents": -5}, "expectedAgents: Input should be greater than or equal to 0"),
])
def test_the_example_refuses_outputs_it_cannot_read(prod_outputs: Path, tmp_path: Path, change: dict[str, Any],
                                                    says: str) -> None:
    reference = tmp_path / "outputs.json"
    reference.write_text(json.dumps({**json.loads(prod_outputs.read_text()), **change}))
    result = plan_example(reference, tmp_path / "plan.json")
    assert result.returncode == 2 and not (tmp_path / "plan.json").exists()
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"the outputs of stack {FLEET_STACK}: " in result.stderr and says in result.stderr, result.stderr


@pytest.mark.plan
def test_the_example_without_its_reference_says_what_to_give(tmp_path: Path) -> None:
    result = run_fleet("plan", "--program", str(EXAMPLE), "--stack", "prod", "--no-policy")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"--stack-reference {FLEET_STACK}=FILE" in result.stderr


def test_the_grafana_dashboard_holds_the_same_queries_and_every_query_parses(planned: Any, tmp_path: Path) -> None:
    plan = planned("scale")
    files = written_monitoring(plan, tmp_path)
    board = json.loads((files / "pilot-fleet.grafana.json").read_text())
    targets = [t for p in board["panels"] for t in p["targets"]]
    assert [t["expr"] for t in targets] == dashboard_queries(plan)
    assert all(t["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for t in targets)
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    # promtool parses every query: as recording rules, the one form of a bare query it checks
    check = tmp_path / "queries.yml"
    check.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"pilot:dashboard_{i}", "expr": t["expr"]} for i, t in enumerate(targets)]}]}))
    result = promtool("check", "rules", str(check))
    assert result.returncode == 0 and f"SUCCESS: {len(targets)} rules found" in result.stdout, result.stdout
