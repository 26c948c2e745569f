"""The fleet as shipped, plus a deny rule on the registry port at a better priority than the fleet's allow rule:
on Compute Engine the deny wins, so no agent reaches the registry (firewall semantics; `pilot-ports-open` must
reject it)."""

import runpy
from pathlib import Path

import pulumi_gcp as gcp

runpy.run_path(str(Path(__file__).resolve().parents[3] / "__main__.py"), run_name="__main__")
gcp.compute.Firewall("deny-registry", network="pilot-fleet", direction="INGRESS", priority=100,
                     denies=[{"protocol": "tcp", "ports": ["9000"]}], source_ranges=["0.0.0.0/0"],
                     target_tags=["pilot-rendezvous"])
