"""The fleet's VPC: a network and subnet (or existing ones by name) and the SSH-through-IAP rule."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from fleet.config.model import FleetConfig

FLEET_TAG = "pilot-fleet"
RENDEZVOUS_TAG = "pilot-rendezvous"


def swarm_tag(host_name: str) -> str:
    return f"pilot-swarm-{host_name}"


class FleetNetwork(pulumi.ComponentResource):
    network: pulumi.Output[str]
    subnetwork: pulumi.Output[str]

    def __init__(self, cfg: FleetConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        net = cfg.network
        super().__init__("pilot-fleet:fleet:Network", net.name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        project, region = cfg.gcp.project, cfg.gcp.region
        subnet_name = net.subnet_name or f"{net.name}-{region}"
        if net.existing:
            self.network = pulumi.Output.from_input(f"projects/{project}/global/networks/{net.name}")
            self.subnetwork = pulumi.Output.from_input(f"projects/{project}/regions/{region}/subnetworks/{subnet_name}")
        else:
            network = gcp.compute.Network(net.name, name=net.name, project=project,
                                          auto_create_subnetworks=False, opts=child)
            subnet = gcp.compute.Subnetwork(subnet_name, name=subnet_name, project=project, region=region,
                                            network=network.id, ip_cidr_range=net.subnet_cidr,
                                            private_ip_google_access=True, opts=child)
            self.network, self.subnetwork = network.id, subnet.id
        gcp.compute.Firewall(
            f"{net.name}-allow-ssh",
            name=f"{net.name}-allow-ssh",
            project=project,
            network=self.network,
            description="SSH to fleet hosts only from the configured ranges (default: IAP TCP forwarding).",
            direction="INGRESS",
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=["22"])],
            source_ranges=cfg.ssh_source_ranges,
            target_tags=[FLEET_TAG],
            opts=child,
        )
        self.register_outputs({"network": self.network, "subnetwork": self.subnetwork})
