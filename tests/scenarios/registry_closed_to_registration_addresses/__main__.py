"""The prod fleet as shipped (agentReach vpc: every swarm VM registers from its internal address and an alias IP
range of the fleet's subnet), plus a deny of the registry port from that subnet at a better priority than the
fleet's allow rule: the agents could not register from their addresses (`pilot-ports-open` must reject it)."""

import runpy
from pathlib import Path

import pulumi_gcp as gcp

runpy.run_path(str(Path(__file__).resolve().parents[3] / "__main__.py"), run_name="__main__")
gcp.compute.Firewall("deny-registry-from-subnet", network="pilot-fleet", direction="INGRESS", priority=100,
                     denies=[{"protocol": "tcp", "ports": ["9000"]}], source_ranges=["10.20.0.0/20"],
                     target_tags=["pilot-rendezvous"])
