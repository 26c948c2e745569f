"""Cloud Monitoring from the fleet's one definition of its alerts and dashboard: an alert policy with a PromQL
condition per alert (the Prometheus rule's expression and hold time) and a dashboard of PromQL tiles. Plain data,
declared by fleet/components/cloud_monitoring.py in the fleet stack (`monitoring.cloud: true`) or by the monitoring
example stack (examples/monitoring/), which reads the fleet's outputs by reference.

The metrics are Managed Service for Prometheus series: queried by their Prometheus names and labels."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from fleet.monitoring.alerts import RULE_GROUP, Alert, Timings, Watched, fleet_alerts, seconds
from fleet.monitoring.panels import Panel, fleet_panels

# Cloud Monitoring evaluates a PromQL condition every multiple of 30 s (AlertPolicy's evaluationInterval).
EVALUATION_STEP_SECONDS = 30
# A dashboard's mosaic layout is 48 columns wide: two tiles a row.
COLUMNS, TILE_WIDTH, TILE_HEIGHT = 48, 24, 16
UNITS = {"agents": "1", "bytes": "By", "ratio": "1", "per-second": "1/s"}


@dataclass(frozen=True)
class PolicySpec:
    """One gcp.monitoring.AlertPolicy, as plain values (its resource name is `name`)."""

    name: str
    display_name: str
    severity: str  # CRITICAL | WARNING
    query: str
    duration: str  # "<seconds>s"
    evaluation_interval: str
    documentation: str


def evaluation_interval(timings: Timings) -> str:
    """The scrape interval, rounded up to Cloud Monitoring's 30 s step."""
    step = EVALUATION_STEP_SECONDS
    return f"{max(step, math.ceil(seconds(timings.scrape_interval) / step) * step)}s"


def policy_spec(alert: Alert, watched: Watched, timings: Timings) -> PolicySpec:
    docs = f"{alert.title}.\n\n{alert.description}\n\n" if alert.description else f"{alert.title}.\n\n"
    return PolicySpec(
        name=alert.name, display_name=f"{alert.title} ({watched.fleet})", severity=alert.severity.upper(),
        query=alert.expr, duration=f"{math.ceil(seconds(alert.hold))}s",
        evaluation_interval=evaluation_interval(timings),
        documentation=docs + f"Prometheus rule `{alert.name}` of group `{RULE_GROUP}`, written by `python -m fleet "
                             f"monitoring` from the same definition (fleet/monitoring/alerts.py).")


def alert_policies(watched: Watched, timings: Timings | None = None) -> list[PolicySpec]:
    timings = timings or Timings()
    return [policy_spec(alert, watched, timings) for alert in fleet_alerts(watched, timings)]


def tile(panel: Panel, index: int) -> dict[str, Any]:
    return {
        "xPos": (index % 2) * TILE_WIDTH, "yPos": (index // 2) * TILE_HEIGHT, "width": TILE_WIDTH,
        "height": TILE_HEIGHT,
        "widget": {"title": panel.title, "xyChart": {
            "dataSets": [{"timeSeriesQuery": {"prometheusQuery": q.expr, "unitOverride": UNITS[panel.unit]},
                          "plotType": "LINE", "targetAxis": "Y1"} for q in panel.queries],
            "yAxis": {"scale": "LINEAR"}}},
    }


def dashboard(watched: Watched) -> dict[str, Any]:
    """A gcp.monitoring.Dashboard's dashboardJson (Cloud Monitoring's Dashboard resource, mosaic layout)."""
    return {"displayName": f"Pilot fleet {watched.fleet}",
            "mosaicLayout": {"columns": COLUMNS, "tiles": [tile(p, i) for i, p in enumerate(fleet_panels(watched))]}}


def dashboard_json(watched: Watched) -> str:
    return json.dumps(dashboard(watched), sort_keys=True)
