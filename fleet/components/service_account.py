"""A dedicated, least-privilege service account per fleet role: it may write logs and metrics, nothing else."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter")
# OAuth scopes on the VM match the IAM roles, never cloud-platform.
SCOPES = ("https://www.googleapis.com/auth/logging.write", "https://www.googleapis.com/auth/monitoring.write")
# ... but for the rendezvous with registry TLS: Secret Manager accepts no narrower scope than cloud-platform, so its
# service account's IAM is what bounds it (logs, metrics, and reading the one secret of the registry's key)
SECRET_READER_SCOPES = (*SCOPES, "https://www.googleapis.com/auth/cloud-platform")


@dataclass(frozen=True, kw_only=True)
class ServiceAccountArgs:
    project: str


class FleetServiceAccount(pulumi.ComponentResource):
    """`name` is the account id (pilot-rendezvous-vm, pilot-swarm-vm)."""

    email: pulumi.Output[str]

    def __init__(self, name: str, args: ServiceAccountArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pilot-fleet:fleet:ServiceAccount", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account = gcp.serviceaccount.Account(name, account_id=name, project=args.project,
                                             display_name=f"pilot-fleet {name}", opts=child)
        for role in ROLES:
            gcp.projects.IAMMember(f"{name}-{role.split('/')[-1]}", project=args.project, role=role,
                                   member=account.email.apply(lambda e: f"serviceAccount:{e}"), opts=child)
        self.email = account.email
        self.register_outputs({"email": self.email})
