"""An instance that brings its own startup script: it would silently disable the project-level one."""

import pulumi_gcp as gcp

gcp.compute.Instance(
    "ghost",
    machine_type="e2-standard-8",
    zone="us-central1-a",
    boot_disk={"initialize_params": {"image": "debian-cloud/debian-12"}},
    network_interfaces=[{"network": "default"}],
    metadata_startup_script="for i in $(seq 500); do pilot-daemon & done",
)
