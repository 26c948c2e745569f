"""A monitoring stack that reads a pilot-fleet stack's outputs by reference (pulumi.StackReference), checks them
against the outputs' schema and its version (fleet/outputs.py), and declares the fleet's alert policies and
dashboard in Cloud Monitoring (fleet/components/cloud_monitoring.py, the same component `monitoring.cloud: true`
declares in the fleet stack itself). An outputs schema it does not know stops the program with one message: no
dashboard is built from a reading it cannot trust."""

from typing import Any

import pulumi

from fleet.components.cloud_monitoring import CloudMonitoring, CloudMonitoringArgs
from fleet.monitoring.alerts import Watched, watched_by
from fleet.outputs import OutputsError, outputs_of

config = pulumi.Config()
fleet_stack = config.require("fleetStack")
channels: list[str] = config.get_object("notificationChannels") or []
gcp_project = pulumi.Config("gcp").require("project")
reference = pulumi.StackReference(fleet_stack)


def read(outputs: dict[str, Any]) -> Watched:
    try:
        return watched_by(outputs_of(outputs, f"the outputs of stack {fleet_stack}"))
    except OutputsError as error:
        raise pulumi.RunError(str(error)) from None


monitoring = CloudMonitoring("pilot-fleet", CloudMonitoringArgs(
    project=gcp_project, watched=reference.outputs.apply(read), notification_channels=channels,
    labels={"app": "pilot-fleet", "managed-by": "pulumi"}))
pulumi.export("alertPolicies", [policy.name for policy in monitoring.policies.values()])
pulumi.export("dashboard", monitoring.dashboard.id)
