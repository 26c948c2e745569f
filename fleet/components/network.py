"""The fleet's VPC: a network and subnet (or existing ones by name) and the SSH-through-IAP rule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from fleet.facts import names


@dataclass(frozen=True, kw_only=True)
class NetworkArgs:
    project: str
    region: str
    subnet_cidr: str
    # who may SSH to fleet VMs (an empty list would mean 0.0.0.0/0 to GCP: config refuses it)
    ssh_source_ranges: Sequence[str]
    existing: bool = False  # use the network `name` (and its subnet) instead of creating them
    subnet_name: str | None = None  # default: <name>-<region>


class FleetNetwork(pulumi.ComponentResource):
    network: pulumi.Output[str]
    subnetwork: pulumi.Output[str]
    # what VMs name on their interfaces beside the subnetwork: the network when this stack does not declare it
    interface_network: pulumi.Output[str] | None

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pilot-fleet:fleet:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        project, region = args.project, args.region
        subnet_name = args.subnet_name or names.subnet(name, region)
        if args.existing:
            self.network = pulumi.Output.from_input(f"projects/{project}/global/networks/{name}")
            self.subnetwork = pulumi.Output.from_input(f"projects/{project}/regions/{region}/subnetworks/{subnet_name}")
            self.interface_network = self.network
        else:
            network = gcp.compute.Network(name, name=name, project=project, auto_create_subnetworks=False, opts=child)
            subnet = gcp.compute.Subnetwork(subnet_name, name=subnet_name, project=project, region=region,
                                            network=network.id, ip_cidr_range=args.subnet_cidr,
                                            private_ip_google_access=True, opts=child)
            self.network, self.subnetwork = network.id, subnet.id
            self.interface_network = None  # the subnetwork, declared here, says it (and prod's VMs stay as they are)
        gcp.compute.Firewall(
            names.ssh_rule(name),
            name=names.ssh_rule(name),
            project=project,
            network=self.network,
            description="SSH to fleet hosts only from the configured ranges (default: IAP TCP forwarding).",
            direction="INGRESS",
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=["22"])],
            source_ranges=list(args.ssh_source_ranges),
            target_tags=[names.FLEET_TAG],
            opts=child,
        )
        self.register_outputs({"network": self.network, "subnetwork": self.subnetwork})
