"""Google's Ops Agent on each fleet VM: a Prometheus receiver that scrapes the VM's own metrics (a swarm VM's
supervisor, the rendezvous' loopback-only /metrics) into Managed Service for Prometheus, where the alert policies and
the dashboard of cloud.py read them. The config is the same on every VM of a role: the agent labels each target
with the VM's own metadata (`__meta_gce_*`), and the relabelling turns those into the labels every other way in
uses (pilot_fleet, pilot_host, pilot_zone, pilot_pool).

What the Ops Agent's receiver takes (its source, confgenerator/prometheus.go, GoogleCloudPlatform/ops-agent 2.70.0):
static_configs only, no rule_files or honor_labels, no relabelling onto location, namespace or cluster, and a
scrape interval of at least 10 s. tests/test_ops_agent.py holds the config to those and to promtool."""

from __future__ import annotations

import json
from typing import Any

from fleet.monitoring.alerts import SCRAPE_JOBS, Timings, seconds
from fleet.monitoring.panels import POOL_SERIES_LABEL

RECEIVER = "pilot_fleet"
MIN_SCRAPE_SECONDS = 10


def relabelling() -> list[dict[str, Any]]:
    """The VM's own metadata, as the Ops Agent gives it to each target, into the fleet's labels. A pool's VMs carry
    Compute Engine's `created-by` (their group manager, named as the pool)."""
    return [
        {"source_labels": ["__meta_gce_project"], "target_label": "pilot_fleet"},
        {"source_labels": ["__meta_gce_instance_name"], "target_label": "pilot_host"},
        {"source_labels": ["__meta_gce_zone"], "regex": "(?:.*/)?([^/]+)", "target_label": "pilot_zone"},
        {"source_labels": ["__meta_gce_metadata_created_by"], "regex": ".*/instanceGroupManagers/(.+)",
         "target_label": POOL_SERIES_LABEL},
    ]


def scrape_config(role: str, port: int, timings: Timings) -> dict[str, Any]:
    """The receiver's Prometheus config: this VM's metrics on loopback."""
    interval = max(MIN_SCRAPE_SECONDS, round(seconds(timings.scrape_interval)))
    return {"scrape_configs": [{
        "job_name": SCRAPE_JOBS[role], "scrape_interval": f"{interval}s",
        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
        "relabel_configs": relabelling(),
    }]}


def ops_agent_config(role: str, port: int, timings: Timings | None = None) -> dict[str, Any]:
    """/etc/google-cloud-ops-agent/config.yaml of a VM of ROLE whose metrics answer on PORT. It adds a pipeline to
    the agent's built-in ones (host metrics, syslog), which it leaves as they are."""
    return {"metrics": {
        "receivers": {RECEIVER: {"type": "prometheus", "config": scrape_config(role, port, timings or Timings())}},
        "service": {"pipelines": {RECEIVER: {"receivers": [RECEIVER]}}},
    }}


def ops_agent_attribute(role: str, port: int, timings: Timings | None = None) -> str:
    """The config as the VM's attribute carries it: one line of JSON (JSON is YAML; the boot path writes it as it
    is)."""
    return json.dumps(ops_agent_config(role, port, timings), sort_keys=True, separators=(",", ":"))


def ops_agent_metadata(role: str, port: int, version: str | None) -> dict[str, str]:
    """The VM's Ops Agent attributes by the contract's field names: both, or none when VERSION is None."""
    if version is None:
        return {}
    return {"ops_agent_version": version, "ops_agent_config": ops_agent_attribute(role, port)}
