"""A dedicated, least-privilege service account per fleet role: it may write logs and metrics, nothing else."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter")
# OAuth scopes on the VM match the IAM roles, never cloud-platform.
SCOPES = ("https://www.googleapis.com/auth/logging.write", "https://www.googleapis.com/auth/monitoring.write")


class FleetServiceAccount(pulumi.ComponentResource):
    email: pulumi.Output[str]

    def __init__(self, account_id: str, project: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pilot-fleet:fleet:ServiceAccount", account_id, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account = gcp.serviceaccount.Account(account_id, account_id=account_id, project=project,
                                             display_name=f"pilot-fleet {account_id}", opts=child)
        for role in ROLES:
            gcp.projects.IAMMember(f"{account_id}-{role.split('/')[-1]}", project=project, role=role,
                                   member=account.email.apply(lambda e: f"serviceAccount:{e}"), opts=child)
        self.email = account.email
        self.register_outputs({"email": self.email})
