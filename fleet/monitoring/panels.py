"""The fleet's dashboard, defined once: each panel renders a Cloud Monitoring dashboard tile (cloud.py) and a
Grafana panel (grafana.py) from the same PromQL. Target against running per host and per pool, the fleet's total,
the registry's counts (the rendezvous' own /metrics), and memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fleet.monitoring.alerts import Watched
from fleet.vm_contract import MetricName

# The label a pool's VMs carry (Prometheus' gce_sd relabelling sets it; a stand-alone host has none).
POOL_SERIES_LABEL = "pilot_pool"


class RendezvousMetric:
    """The pinned rendezvous' /metrics names the dashboard reads (pkg/registry/metrics.go of the pinned source)."""

    NODES_ONLINE = "pilot_nodes_online"
    NODES_TOTAL = "pilot_nodes_total"
    REGISTRATIONS = "pilot_registrations_total"
    DEREGISTRATIONS = "pilot_deregistrations_total"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str  # a Grafana legend: {{label}} is the series' label


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: Literal["agents", "bytes", "ratio", "per-second"]


def fleet_panels(watched: Watched) -> list[Panel]:
    m, r, sel, pool = MetricName, RendezvousMetric, watched.selector, POOL_SERIES_LABEL
    return [
        Panel("Agents per host: running against target", (
            Query(f"sum by (pilot_host) ({m.RUNNING_AGENTS}{sel})", "{{pilot_host}} running"),
            Query(f"sum by (pilot_host) ({m.TARGET_AGENTS}{sel})", "{{pilot_host}} target")), "agents"),
        Panel("Agents per pool: running against target", (
            Query(f"sum by ({pool}) ({m.RUNNING_AGENTS}{sel})", "{{" + pool + "}} running"),
            Query(f"sum by ({pool}) ({m.TARGET_AGENTS}{sel})", "{{" + pool + "}} target")), "agents"),
        Panel(f"Fleet: running agents against the {watched.expected_agents} expected", (
            Query(f"sum({m.RUNNING_AGENTS}{sel})", "running"),
            Query(f"sum({m.TARGET_AGENTS}{sel})", "target")), "agents"),
        Panel("Registry: nodes online and known", (
            Query(f"sum({r.NODES_ONLINE}{sel})", "online"),
            Query(f"sum({r.NODES_TOTAL}{sel})", "known")), "agents"),
        Panel("Registry: registrations and deregistrations per second", (
            Query(f"sum(rate({r.REGISTRATIONS}{sel}[5m]))", "registrations"),
            Query(f"sum(rate({r.DEREGISTRATIONS}{sel}[5m]))", "deregistrations")), "per-second"),
        Panel("Memory available per host", (
            Query(f"{m.HOST_MEMORY_AVAILABLE}{sel} / {m.HOST_MEMORY_TOTAL}{sel}", "{{pilot_host}}"),), "ratio"),
        Panel("Agents' resident memory per host", (
            Query(f"sum by (pilot_host) ({m.AGENTS_RSS}{sel})", "{{pilot_host}}"),), "bytes"),
    ]
