"""`python -m fleet monitoring`: the files it writes from the prod plan's outputs, checked and unit-tested by
Prometheus' own promtool (Debian's prometheus package, unpacked by scripts/dev.sh)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, run_fleet

PROMTOOL = REPO / ".cache/prometheus/usr/bin/promtool"


@pytest.fixture(scope="module")
def written(planned: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    outputs = tmp_path_factory.mktemp("outputs") / "prod.json"
    outputs.write_text(json.dumps(planned("prod")["outputs"]))
    out = tmp_path_factory.mktemp("monitoring")
    result = run_fleet("monitoring", "--outputs", str(outputs), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: run `bash scripts/dev.sh test`, which unpacks Debian's prometheus")
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, timeout=60, check=False)


def test_service_discovery_lists_every_swarm_supervisor(written: Path, planned: Any) -> None:
    groups = json.loads((written / "pilot-agents.json").read_text())
    hosts = {h["name"]: h for h in planned("prod")["outputs"]["hosts"] if h["role"] == "swarm"}
    assert {g["labels"]["pilot_host"] for g in groups} == set(hosts)
    for group in groups:
        host = hosts[group["labels"]["pilot_host"]]
        assert group["targets"] == [f"{host['internalIp']}:8081"]
        assert group["labels"]["pilot_target_agents"] == str(host["targetAgents"])
        assert group["labels"]["pilot_fleet"] == "pilot-fleet-prod"
    rendezvous = json.loads((written / "pilot-rendezvous.json").read_text())
    assert rendezvous[0]["targets"] == ["127.0.0.1:3000"]  # its /metrics answers only from loopback


def test_rules_carry_the_outputs_thresholds_and_pass_promtool(written: Path) -> None:
    rules = {r["alert"]: r for r in yaml.safe_load((written / "pilot-fleet.rules.yml").read_text())["groups"][0]
             ["rules"]}
    assert set(rules) == {"PilotFleetAgentsBelowThreshold", "PilotHostBelowTarget", "PilotFleetRssGrowth",
                          "PilotHostMemoryLow"}
    assert rules["PilotFleetAgentsBelowThreshold"]["expr"].endswith("< 9025")  # alertMinOnline of prod
    assert "104857600" in rules["PilotFleetRssGrowth"]["expr"]
    assert "< 0.2" in rules["PilotHostMemoryLow"]["expr"]
    check = promtool("check", "rules", str(written / "pilot-fleet.rules.yml"))
    assert check.returncode == 0 and "SUCCESS: 4 rules found" in check.stdout, check.stdout + check.stderr


def test_scrape_config_passes_promtool(written: Path) -> None:
    check = promtool("check", "config", str(written / "prometheus-scrape.yml"))
    assert check.returncode == 0, check.stdout + check.stderr


def _series(name: str, host: str, values: str) -> dict[str, str]:
    return {"series": f'{name}{{pilot_fleet="pilot-fleet-prod",pilot_host="{host}",pilot_target_agents="5000"}}',
            "values": values}


def test_each_alert_fires_on_the_seed_fleets_incidents_and_not_when_healthy(written: Path, tmp_path: Path) -> None:
    """promtool's rule unit tests: synthetic series for the seed's incidents, one minute apart."""
    leak = " ".join(str(1_000_000_000 + i * 2_000_000) for i in range(121))  # +120 MB an hour, flat count
    tests = {"rule_files": [str(written / "pilot-fleet.rules.yml")], "evaluation_interval": "1m", "tests": [
        {"interval": "1m",
         "input_series": [
             _series("pilot_agents_running", "swarm-1", "3000x120"),
             _series("pilot_target_agents", "swarm-1", "3000x120"),
             _series("pilot_agents_running", "swarm-2", "5000x30 3600x90"),  # swarm-2 loses 1,400 agents
             _series("pilot_target_agents", "swarm-2", "5000x120"),
             _series("pilot_agents_running", "swarm-3", "1500x120"),
             _series("pilot_target_agents", "swarm-3", "1500x120"),
             _series("pilot_agents_rss_bytes", "swarm-1", leak),
             _series("pilot_host_memory_available_bytes", "swarm-3", "20000000000x30 5000000000x90"),
             _series("pilot_host_memory_total_bytes", "swarm-3", "32000000000x120"),
         ],
         "alert_rule_test": [
             {"eval_time": "20m", "alertname": "PilotFleetAgentsBelowThreshold", "exp_alerts": []},
             {"eval_time": "20m", "alertname": "PilotHostBelowTarget", "exp_alerts": []},
             {"eval_time": "20m", "alertname": "PilotHostMemoryLow", "exp_alerts": []},
             {"eval_time": "50m", "alertname": "PilotFleetAgentsBelowThreshold",
              "exp_alerts": [{"exp_labels": {"severity": "critical"}, "exp_annotations": {
                  "summary": "Fewer than 9025 of 9500 agents running (threshold 0.95)",
                  "description": "8100 agents running across the fleet's supervisors. Run `python -m fleet "
                                 "verify` for the registry's online count and the host at fault."}}]},
             {"eval_time": "50m", "alertname": "PilotHostBelowTarget",
              "exp_alerts": [{"exp_labels": {"severity": "warning", "pilot_fleet": "pilot-fleet-prod",
                                             "pilot_host": "swarm-2", "pilot_target_agents": "5000"},
                              "exp_annotations": {
                                  "summary": "swarm-2 runs 3600 agents, below its target (5000)",
                                  "description": "Its supervisor's status (`/status`, `journalctl -u pilot-agents`) "
                                                 "names what holds it back."}}]},
             {"eval_time": "50m", "alertname": "PilotHostMemoryLow",
              "exp_alerts": [{"exp_labels": {"severity": "critical", "pilot_fleet": "pilot-fleet-prod",
                                             "pilot_host": "swarm-3", "pilot_target_agents": "5000"},
                              "exp_annotations": {"summary": "swarm-3 has less than 20% memory available (the seed "
                                                             "fleet swapped at this point)"}}]},
             {"eval_time": "30m", "alertname": "PilotFleetRssGrowth", "exp_alerts": []},
             {"eval_time": "110m", "alertname": "PilotFleetRssGrowth",
              "exp_alerts": [{"exp_labels": {"severity": "warning"}, "exp_annotations": {
                  "summary": "Fleet agent RSS grew more than 100 MiB in an hour with a flat agent count",
                  "description": "A leak, or connections piling up: check the busiest hosts' agents."}}]},
         ]},
    ]}
    path = tmp_path / "rules.test.yml"
    path.write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_bad_outputs_and_unwritable_directory(tmp_path: Path, planned: Any) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schemaVersion": 2}')
    result = run_fleet("monitoring", "--outputs", str(bad), "--out", str(tmp_path / "m"))
    assert result.returncode == 2 and result.stderr.startswith(f"error: {bad}: statsUrl: Field required")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(planned("prod")["outputs"]))
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_fleet("monitoring", "--outputs", str(good), "--out", str(blocker / "sub"))
    assert result.returncode == 2 and result.stderr.startswith(f"error: cannot write to {blocker / 'sub'}")


def test_pools_are_found_by_their_label_and_the_config_passes_promtool(planned: Any, tmp_path: Path) -> None:
    outputs = tmp_path / "scale.json"
    outputs.write_text(json.dumps(planned("scale")["outputs"]))
    result = run_fleet("monitoring", "--outputs", str(outputs), "--out", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr
    scrape = yaml.safe_load((tmp_path / "m/prometheus-scrape.yml").read_text())
    pool = next(j for j in scrape["scrape_configs"] if j["job_name"] == "pilot-pool-scale-e2-highmem-8")
    assert [c["zone"] for c in pool["gce_sd_configs"]] == ["us-central1-a", "us-central1-b", "us-central1-c"]
    assert all(c["filter"] == 'labels.pilot-pool="scale-e2-highmem-8"' and c["port"] == 8081
               for c in pool["gce_sd_configs"])
    check = promtool("check", "config", str(tmp_path / "m/prometheus-scrape.yml"))
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_scrape_port_comes_from_the_outputs(planned: Any, tmp_path: Path) -> None:
    """A stack on other ports (dashboard 3100, supervisors 8181) gets jobs on those ports: monitoring reads the
    outputs' `ports`, never the defaults."""
    outputs = json.loads(json.dumps(planned("scale")["outputs"]))
    outputs["ports"].update(dashboard=3100, health=8181)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    result = run_fleet("monitoring", "--outputs", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out" / "pilot-rendezvous.json").read_text())[0]["targets"] == ["127.0.0.1:3100"]
    scrape = yaml.safe_load((tmp_path / "out/prometheus-scrape.yml").read_text())
    pool = next(j for j in scrape["scrape_configs"] if j["job_name"].startswith("pilot-pool-"))
    assert {c["port"] for c in pool["gce_sd_configs"]} == {8181}
    assert pool["relabel_configs"][0]["replacement"] == "$1:8181"
    prod = json.loads(json.dumps(planned("prod")["outputs"]))
    prod["ports"]["health"] = 8181
    path.write_text(json.dumps(prod))
    assert run_fleet("monitoring", "--outputs", str(path), "--out", str(tmp_path / "prod")).returncode == 0
    agents = json.loads((tmp_path / "prod" / "pilot-agents.json").read_text())
    assert agents and all(t["targets"][0].endswith(":8181") for t in agents)


def test_alert_timings_are_settings_with_the_seeds_defaults(planned: Any, tmp_path: Path) -> None:
    """A test bed (or an impatient operator) shortens the scrape interval and an alert's `for:`; the shipped values
    stay the seed's, and a bad one is one line naming it."""
    outputs = tmp_path / "prod.json"
    outputs.write_text(json.dumps(planned("prod")["outputs"]))

    def written(*args: str) -> tuple[dict[str, str], set[str]]:
        result = run_fleet("monitoring", "--outputs", str(outputs), "--out", str(tmp_path / "m"), *args)
        assert result.returncode == 0, result.stderr
        rules = yaml.safe_load((tmp_path / "m/pilot-fleet.rules.yml").read_text())["groups"][0]["rules"]
        scrape = yaml.safe_load((tmp_path / "m/prometheus-scrape.yml").read_text())
        return {r["alert"]: r["for"] for r in rules}, {j["scrape_interval"] for j in scrape["scrape_configs"]}

    assert written() == ({"PilotFleetAgentsBelowThreshold": "10m", "PilotHostBelowTarget": "15m",
                          "PilotFleetRssGrowth": "5m", "PilotHostMemoryLow": "5m"}, {"60s"})
    shortened, every = written("--scrape-interval", "1s", "--alert-for", "PilotHostBelowTarget=5s")
    assert shortened["PilotHostBelowTarget"] == "5s" and shortened["PilotFleetAgentsBelowThreshold"] == "10m"
    assert every == {"1s"}
    for args, said in ((["--alert-for", "PilotNoSuchAlert=5s"], "no alert 'PilotNoSuchAlert'"),
                       (["--alert-for", "PilotHostBelowTarget=soon"], "'soon' is not a Prometheus duration"),
                       (["--scrape-interval", "1 minute"], "'1 minute' is not a Prometheus duration")):
        result = run_fleet("monitoring", "--outputs", str(outputs), "--out", str(tmp_path / "bad"), *args)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and said in result.stderr, result
