"""Prometheus files from the stack outputs: file-based service discovery for the supervisors' and the rendezvous'
metrics, and the fleet's alerts (alerts.py) as rules carrying the outputs' thresholds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from fleet.facts import pilot
from fleet.monitoring.alerts import RULE_GROUP, SCRAPE_JOBS, TARGET_LABEL, Timings, fleet_alerts, watched_by
from fleet.monitoring.panels import POOL_SERIES_LABEL
from fleet.outputs import StackOutputs

AGENTS_SD = "pilot-agents.json"
RENDEZVOUS_SD = "pilot-rendezvous.json"
RULES = "pilot-fleet.rules.yml"
SCRAPE_CONFIG = "prometheus-scrape.yml"


def service_discovery(outputs: StackOutputs) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    fleet = watched_by(outputs).fleet
    agents = [{"targets": [f"{h.internal_ip}:{outputs.ports.health}"],
               "labels": {"pilot_fleet": fleet, "pilot_host": h.name, "pilot_zone": h.zone,
                          TARGET_LABEL: str(h.target_agents)}}
              for h in outputs.swarm_hosts if h.internal_ip]
    # The rendezvous answers /metrics only from loopback: this target is for a Prometheus agent on that VM, on the
    # stack's own dashboard port (a stack may move it off 3000).
    rendezvous = [{"targets": [f"127.0.0.1:{outputs.ports.dashboard}"],
                   "labels": {"pilot_fleet": fleet, "pilot_host": h.name, "pilot_zone": h.zone}}
                  for h in outputs.hosts if h.role == pilot.ROLE_RENDEZVOUS]
    return agents, rendezvous


def alert_rules(outputs: StackOutputs, timings: Timings | None = None) -> dict[str, Any]:
    rules = []
    for alert in fleet_alerts(watched_by(outputs), timings):
        annotations = {"summary": alert.summary}
        if alert.description:
            annotations["description"] = alert.description
        rules.append({"alert": alert.name, "expr": alert.expr, "for": alert.hold,
                      "labels": {"severity": alert.severity}, "annotations": annotations})
    return {"groups": [{"name": RULE_GROUP, "rules": rules}]}


def scrape_config(outputs: StackOutputs, out: Path, timings: Timings | None = None) -> dict[str, Any]:
    every = (timings or Timings()).scrape_interval
    jobs: list[dict[str, Any]] = [
        {"job_name": SCRAPE_JOBS[pilot.ROLE_SWARM], "scrape_interval": every,
         "file_sd_configs": [{"files": [str(out / AGENTS_SD)]}]},
        {"job_name": SCRAPE_JOBS[pilot.ROLE_RENDEZVOUS], "scrape_interval": every,
         "file_sd_configs": [{"files": [str(out / RENDEZVOUS_SD)]}]},
    ]
    fleet = watched_by(outputs).fleet
    for pool in outputs.pools:
        # a managed instance group's VMs come and go: Prometheus finds them by the template's pool label
        jobs.append({
            "job_name": f"pilot-pool-{pool.name}", "scrape_interval": every,
            "gce_sd_configs": [{"project": fleet, "zone": zone, "port": outputs.ports.health,
                                "filter": f'labels.{pilot.POOL_LABEL}="{pool.name}"'} for zone in pool.zones],
            "relabel_configs": [
                {"source_labels": ["__meta_gce_private_ip"], "target_label": "__address__",
                 "replacement": f"$1:{outputs.ports.health}"},
                {"source_labels": ["__meta_gce_instance_name"], "target_label": "pilot_host"},
                {"source_labels": ["__meta_gce_zone"], "regex": ".*/zones/(.+)", "target_label": "pilot_zone"},
                {"target_label": "pilot_fleet", "replacement": fleet},
                {"target_label": TARGET_LABEL, "replacement": str(pool.target_agents)},
                {"target_label": POOL_SERIES_LABEL, "replacement": pool.name},
            ],
        })
    return {"scrape_configs": jobs, "rule_files": [str(out / RULES)]}


def prometheus_files(outputs: StackOutputs, out: Path, timings: Timings | None = None) -> dict[str, str]:
    """Prometheus' files by name; the scrape config names the others by their paths under OUT."""
    agents, rendezvous = service_discovery(outputs)
    return {
        AGENTS_SD: json.dumps(agents, indent=2) + "\n",
        RENDEZVOUS_SD: json.dumps(rendezvous, indent=2) + "\n",
        RULES: "# Written by `python -m fleet monitoring` from the stack outputs; regenerate, do not edit.\n"
               + yaml.safe_dump(alert_rules(outputs, timings), sort_keys=False),
        SCRAPE_CONFIG: "# Merge into prometheus.yml.\n" + yaml.safe_dump(scrape_config(outputs, out.resolve(), timings),
                                                                         sort_keys=False),
    }
