"""The fleet in Cloud Monitoring: an alert policy per alert of `fleet monitoring` (fleet/monitoring/alerts.py, the
same PromQL and hold time as the Prometheus rule) and the fleet's dashboard. Declared by the fleet stack when its
config asks (`monitoring.cloud: true`), or by a separate stack that reads the fleet's outputs by reference
(examples/monitoring/): what the alerts are about may still be a Pulumi output there."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from fleet.monitoring.alerts import RULE_GROUP, Timings, Watched, alert_names
from fleet.monitoring.cloud import alert_policies, dashboard_json


@dataclass(frozen=True, kw_only=True)
class CloudMonitoringArgs:
    project: pulumi.Input[str]
    watched: pulumi.Input[Watched]
    notification_channels: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)


class CloudMonitoring(pulumi.ComponentResource):
    policies: dict[str, gcp.monitoring.AlertPolicy]
    dashboard: gcp.monitoring.Dashboard

    def __init__(self, name: str, args: CloudMonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pilot-fleet:monitoring:CloudMonitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        watched = pulumi.Output.from_input(args.watched)
        specs = watched.apply(lambda w: {s.name: s for s in alert_policies(w, args.timings)})
        self.policies = {}
        for alert in alert_names():
            def of(attr: str, alert: str = alert) -> pulumi.Output[str]:
                return specs.apply(lambda s: str(getattr(s[alert], attr)))

            self.policies[alert] = gcp.monitoring.AlertPolicy(
                f"{name}-{alert}", project=args.project, display_name=of("display_name"), combiner="OR",
                severity=of("severity"), notification_channels=list(args.notification_channels),
                user_labels=args.labels,
                documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                    subject=of("display_name"), content=of("documentation"), mime_type="text/markdown"),
                conditions=[gcp.monitoring.AlertPolicyConditionArgs(
                    display_name=alert,
                    condition_prometheus_query_language=(
                        gcp.monitoring.AlertPolicyConditionConditionPrometheusQueryLanguageArgs(
                            query=of("query"), duration=of("duration"),
                            evaluation_interval=of("evaluation_interval"), alert_rule=alert, rule_group=RULE_GROUP,
                            labels={"severity": of("severity").apply(str.lower)},
                            # the policies may come before the first VM exports a series
                            disable_metric_validation=True)))],
                opts=child)
        self.dashboard = gcp.monitoring.Dashboard(f"{name}-dashboard", project=args.project,
                                                  dashboard_json=watched.apply(dashboard_json), opts=child)
        self.register_outputs({"policies": [p.name for p in self.policies.values()],
                               "dashboard": self.dashboard.id})
