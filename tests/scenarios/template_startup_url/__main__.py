"""An instance template with a startup-script-url: every VM of a MIG built from it bypasses the project script."""

import pulumi_gcp as gcp

gcp.compute.InstanceTemplate(
    "swarm-template",
    machine_type="e2-standard-16",
    disks=[{"source_image": "debian-cloud/debian-12", "boot": True}],
    network_interfaces=[{"network": "default"}],
    metadata={"pilot-role": "swarm", "startup-script-url": "gs://old-bucket/spawn.sh"},
)
