"""Prometheus files from the stack outputs: file-based service discovery for the supervisors' and the rendezvous'
metrics, and the seed fleet's alerts as rules carrying the outputs' thresholds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from fleet.facts import pilot
from fleet.outputs import StackOutputs
from fleet.vm_contract import RENAMED_METRICS, MetricName

AGENTS_SD = "pilot-agents.json"
RENDEZVOUS_SD = "pilot-rendezvous.json"
RULES = "pilot-fleet.rules.yml"
SCRAPE_CONFIG = "prometheus-scrape.yml"
# The seed's figures: fleet RSS growing faster than this per hour while the agent count is flat is a leak.
RSS_GROWTH_BYTES_PER_HOUR = 100 * 1024 * 1024
MIN_AVAILABLE_MEMORY_SHARE = 0.20


class MonitoringError(Exception):
    pass


def service_discovery(outputs: StackOutputs) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    fleet = outputs.project or "pilot-fleet"
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


# The Prometheus label that carries a host's configured target: the same name as the metric of its supervisor's.
TARGET_LABEL = MetricName.TARGET_AGENTS


def alert_rules(outputs: StackOutputs) -> dict[str, Any]:
    m = MetricName
    fleet = outputs.project or "pilot-fleet"
    sel = f'{{pilot_fleet="{fleet}"}}'
    min_online = outputs.alert_min_online or pilot.min_online(outputs.expected_agents, outputs.alert_threshold)
    target = f"({m.TARGET_AGENTS}{sel} or {RENAMED_METRICS[m.TARGET_AGENTS]}{sel})"
    return {"groups": [{"name": "pilot-fleet", "rules": [
        {"alert": "PilotFleetAgentsBelowThreshold",
         "expr": f"sum({m.RUNNING_AGENTS}{sel}) < {min_online}",
         "for": "10m",
         "labels": {"severity": "critical"},
         "annotations": {
             "summary": f"Fewer than {min_online} of {outputs.expected_agents} agents running "
                        f"(threshold {outputs.alert_threshold:g})",
             "description": "{{ $value }} agents running across the fleet's supervisors. "
                            "Run `python -m fleet verify` for the registry's online count and the host at fault."}},
        {"alert": "PilotHostBelowTarget",
         # a supervisor that has not rebooted into the renamed contract exports the old name (RENAMED_METRICS)
         "expr": f"{m.RUNNING_AGENTS}{sel} < {target}",
         "for": "15m",
         "labels": {"severity": "warning"},
         "annotations": {"summary": "{{ $labels.pilot_host }} runs {{ $value }} agents, below its target "
                                    "({{ $labels." + TARGET_LABEL + " }})"}},
        {"alert": "PilotFleetRssGrowth",
         "expr": (f"delta(sum({m.AGENTS_RSS}{sel})[1h:5m]) > {RSS_GROWTH_BYTES_PER_HOUR} "
                  f"and abs(delta(sum({m.RUNNING_AGENTS}{sel})[1h:5m])) < 1"),
         "for": "5m",
         "labels": {"severity": "warning"},
         "annotations": {"summary": "Fleet agent RSS grew more than 100 MiB in an hour with a flat agent count",
                         "description": "A leak, or connections piling up: check the busiest hosts' agents."}},
        {"alert": "PilotHostMemoryLow",
         "expr": (f"{m.HOST_MEMORY_AVAILABLE}{sel} / {m.HOST_MEMORY_TOTAL}{sel} "
                  f"< {MIN_AVAILABLE_MEMORY_SHARE}"),
         "for": "5m",
         "labels": {"severity": "critical"},
         "annotations": {"summary": "{{ $labels.pilot_host }} has less than 20% memory available "
                                    "(the seed fleet swapped at this point)"}},
    ]}]}


def scrape_config(outputs: StackOutputs, out: Path) -> dict[str, Any]:
    jobs: list[dict[str, Any]] = [
        {"job_name": "pilot-agents", "scrape_interval": "60s",
         "file_sd_configs": [{"files": [str(out / AGENTS_SD)]}]},
        {"job_name": "pilot-rendezvous", "scrape_interval": "60s",
         "file_sd_configs": [{"files": [str(out / RENDEZVOUS_SD)]}]},
    ]
    fleet = outputs.project or "pilot-fleet"
    for pool in outputs.pools:
        # a managed instance group's VMs come and go: Prometheus finds them by the template's pool label
        jobs.append({
            "job_name": f"pilot-pool-{pool.name}", "scrape_interval": "60s",
            "gce_sd_configs": [{"project": fleet, "zone": zone, "port": outputs.ports.health,
                                "filter": f'labels.{pilot.POOL_LABEL}="{pool.name}"'} for zone in pool.zones],
            "relabel_configs": [
                {"source_labels": ["__meta_gce_private_ip"], "target_label": "__address__",
                 "replacement": f"$1:{outputs.ports.health}"},
                {"source_labels": ["__meta_gce_instance_name"], "target_label": "pilot_host"},
                {"source_labels": ["__meta_gce_zone"], "regex": ".*/zones/(.+)", "target_label": "pilot_zone"},
                {"target_label": "pilot_fleet", "replacement": fleet},
                {"target_label": TARGET_LABEL, "replacement": str(pool.target_agents)},
            ],
        })
    return {"scrape_configs": jobs, "rule_files": [str(out / RULES)]}


def write_monitoring(outputs: StackOutputs, out: Path) -> list[Path]:
    agents, rendezvous = service_discovery(outputs)
    files = {
        AGENTS_SD: json.dumps(agents, indent=2) + "\n",
        RENDEZVOUS_SD: json.dumps(rendezvous, indent=2) + "\n",
        RULES: "# Written by `python -m fleet monitoring` from the stack outputs; regenerate, do not edit.\n"
               + yaml.safe_dump(alert_rules(outputs), sort_keys=False),
        SCRAPE_CONFIG: "# Merge into prometheus.yml.\n" + yaml.safe_dump(scrape_config(outputs, out.resolve()),
                                                                         sort_keys=False),
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in files.items():  # each file replaced whole: Prometheus never reads half a file
            tmp = out / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(out / name)
            written.append(out / name)
    except OSError as exc:
        raise MonitoringError(f"cannot write to {out}: {exc.strerror}") from None
    return written
