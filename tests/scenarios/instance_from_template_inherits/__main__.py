"""Instances made from a swarm template inherit its metadata: 1,500 agents, which fit the template's e2-standard-8
(32 GB). "swarm-as-is" keeps the machine type (it fits); "swarm-shrunk" overrides only the machine type, to an
e2-standard-2 (8 GB), which 1,500 agents do not fit. The pack used to judge an instance from a template by its own
metadata, which is empty, and skipped both: `agents-fit-memory` must name "swarm-shrunk" alone."""

import pulumi_gcp as gcp

template = gcp.compute.InstanceTemplate(
    "swarm", machine_type="e2-standard-8",
    disks=[{"source_image": "debian-cloud/debian-12", "boot": True, "auto_delete": True}],
    network_interfaces=[{"network": "default"}],
    metadata={"pilot-role": "swarm", "pilot-target-agents": "1500"})
source = template.self_link_unique  # what the provider recommends; not known at preview
gcp.compute.InstanceFromTemplate("swarm-as-is", zone="us-central1-a", source_instance_template=source)
gcp.compute.InstanceFromTemplate("swarm-shrunk", zone="us-central1-a", source_instance_template=source,
                                 machine_type="e2-standard-2")
