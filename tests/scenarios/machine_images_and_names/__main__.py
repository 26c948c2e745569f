"""Swarm VMs made from what another VM is: a machine image of a swarm host (it carries the host's machine type and
metadata), and a template referred to by its plain name or by a link spelled by hand (no dependency for the engine
to record). Each such VM runs the source's agent target on its own machine type when it sets one.

`agents-fit-memory` must reject exactly:
- "clone-small": a clone of swarm-src (3,000 agents) onto an e2-standard-4;
- "from-plain": an instance from the template named "swarm-tpl" onto an e2-standard-4;
- "from-spelled": the same, the template's link spelled as projects/P/global/instanceTemplates/swarm-tpl;
- "from-partial": the same, as a partial link global/instanceTemplates/swarm-tpl (read in its own project);
and accept "swarm-src", "clone-same" (the source's own machine type) and the template itself."""

import pulumi_gcp as gcp

DISK = {"initialize_params": {"image": "debian-cloud/debian-12"}}
SWARM = {"pilot-role": "swarm", "pilot-target-agents": "3000", "pilot-base-udp-port": "20000"}

source = gcp.compute.Instance("swarm-src", machine_type="e2-standard-16", zone="us-central1-a", boot_disk=DISK,
                              network_interfaces=[{"network": "default"}], metadata=SWARM)
image = gcp.compute.MachineImage("swarm-image", name="swarm-image", source_instance=source.self_link)
gcp.compute.InstanceFromMachineImage("clone-small", zone="us-central1-a", machine_type="e2-standard-4",
                                     source_machine_image=image.self_link)
gcp.compute.InstanceFromMachineImage("clone-same", zone="us-central1-a", source_machine_image=image.self_link)

gcp.compute.InstanceTemplate("swarm-template", name="swarm-tpl", machine_type="e2-standard-16",
                             disks=[{"source_image": "debian-cloud/debian-12", "boot": True}],
                             network_interfaces=[{"network": "default"}], metadata=SWARM)
gcp.compute.InstanceFromTemplate("from-plain", zone="us-central1-a", machine_type="e2-standard-4",
                                 source_instance_template="swarm-tpl")
gcp.compute.InstanceFromTemplate("from-spelled", zone="us-central1-a", machine_type="e2-standard-4",
                                 source_instance_template="projects/scenario-project/global/instanceTemplates/swarm-tpl")
gcp.compute.InstanceFromTemplate("from-partial", zone="us-central1-a", machine_type="e2-standard-4",
                                 source_instance_template="global/instanceTemplates/swarm-tpl")
