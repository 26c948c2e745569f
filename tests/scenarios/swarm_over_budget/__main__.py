"""A swarm host declared by hand with 2,000 agents on 32 GB: the seed fleet's swap incident."""

import pulumi_gcp as gcp

gcp.compute.Instance(
    "swarm-3",
    machine_type="e2-standard-8",
    zone="us-central1-a",
    boot_disk={"initialize_params": {"image": "debian-cloud/debian-12"}},
    network_interfaces=[{"network": "default"}],
    metadata={"pilot-role": "swarm", "pilot-agent-target": "2000", "pilot-base-udp-port": "10000"},
)
