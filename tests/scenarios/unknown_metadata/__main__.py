"""A VM whose whole metadata map is computed from another resource's id: unknown at preview. The plan must judge
what it can and never crash (it used to exit 1 with a traceback, which reads as a policy rejection); and the one
unknown must not blind the stack rules to the other VMs: "crowded", a swarm VM with more agents than its memory
holds, is still rejected by agents-fit-memory, while "computed" is named by preview-unknowns."""

import pulumi_gcp as gcp

seed = gcp.compute.Instance(
    "seed",
    machine_type="e2-small",
    zone="us-central1-a",
    boot_disk={"initialize_params": {"image": "debian-cloud/debian-12"}},
    network_interfaces=[{"network": "default"}],
    metadata={"enable-oslogin": "TRUE"},
)
gcp.compute.Instance(
    "computed",
    machine_type="e2-small",
    zone="us-central1-a",
    boot_disk={"initialize_params": {"image": "debian-cloud/debian-12"}},
    network_interfaces=[{"network": "default"}],
    # instance_id is not known before the seed exists: so the whole map is not, at preview
    metadata=seed.instance_id.apply(lambda seed_id: {"pilot-role": "swarm", "seed": str(seed_id)}),
)
gcp.compute.Instance(
    "crowded",
    machine_type="e2-standard-8",
    zone="us-central1-a",
    boot_disk={"initialize_params": {"image": "debian-cloud/debian-12"}},
    network_interfaces=[{"network": "default"}],
    metadata={"pilot-role": "swarm", "pilot-target-agents": "5000", "pilot-base-udp-port": "20000"},
)
# the fleet's own project startup script, so that the only findings are about the unknown map
from fleet.components.startup_script import ProjectStartupScript, ProjectStartupScriptArgs  # noqa: E402

ProjectStartupScript("startup-script", ProjectStartupScriptArgs(project="scenario-project"))
