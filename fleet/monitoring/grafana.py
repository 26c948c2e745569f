"""A Grafana dashboard from the fleet's one definition of its panels (panels.py), built with Grafana's own
foundation SDK (grafana-foundation-sdk): the same PromQL as the Cloud Monitoring dashboard, read from a Prometheus
data source the operator picks when importing it (the `datasource` variable)."""

from __future__ import annotations

import json

from grafana_foundation_sdk.builders import dashboard as gdashboard
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from fleet.monitoring.alerts import Watched
from fleet.monitoring.panels import Panel, fleet_panels

DASHBOARD = "pilot-fleet.grafana.json"
UNITS = {"agents": "short", "bytes": "bytes", "ratio": "percentunit", "per-second": "reqps"}
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


def panel(spec: Panel) -> timeseries.Panel:
    built = timeseries.Panel().title(spec.title).unit(UNITS[spec.unit]).datasource(DATASOURCE).height(8).span(12)
    for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
        built = built.with_target(prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref)
                                  .datasource(DATASOURCE))
    return built.min(0)


def grafana_dashboard(watched: Watched) -> str:
    """The dashboard's JSON model, as Grafana imports it."""
    board = (gdashboard.Dashboard(f"Pilot fleet {watched.fleet}").uid(f"pilot-fleet-{watched.fleet}"[:40])
             .tags(["pilot-fleet"]).refresh("1m").time("now-6h", "now")
             .with_variable(gdashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")))
    for spec in fleet_panels(watched):
        board = board.with_panel(panel(spec))
    return json.dumps(board.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
