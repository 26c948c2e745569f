"""A rendezvous whose metadata moved its registry to 9100 while its firewall still opens 9000 (ports given as
numbers, as the SDK allows): the pack reads the port from the VM's own metadata, so agents that cannot reach the
registry are caught (facts from the resources; `pilot-ports-open` must reject it)."""

import pulumi_gcp as gcp

gcp.compute.Instance(
    "rendezvous",
    machine_type="e2-standard-4",
    zone="us-central1-a",
    boot_disk={"initialize_params": {"image": "debian-cloud/debian-12"}},
    network_interfaces=[{"network": "default", "access_configs": [{}]}],
    tags=["pilot-rendezvous"],
    metadata={"pilot-role": "rendezvous", "pilot-registry-port": "9100", "pilot-beacon-port": "9001",
              "pilot-dashboard-port": "3000"},
)
for name, protocol, port in (("registry", "tcp", 9000), ("beacon", "udp", 9001)):
    gcp.compute.Firewall(f"allow-{name}", network="default", direction="INGRESS", source_ranges=["0.0.0.0/0"],
                         allows=[{"protocol": protocol, "ports": [port]}], target_tags=["pilot-rendezvous"])
