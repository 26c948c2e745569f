"""Instance-level scripts on every kind of resource that makes a VM: an instance (metadataStartupScript, and a
startup-script key beside a secret SSH key), a template (startup-script-url), a group's all-instances config
(user-data) and a per-instance config (shutdown-script); one key the VM reads only once it exists (a value unknown
at preview); and a clean instance. At the default level `no-instance-startup-scripts` rejects each of the four;
with policies/remediate.json it strips exactly the script keys, keeping every other key, the secret a secret and
the unknown value unknown, and leaves the clean instance alone."""

import pulumi
import pulumi_gcp as gcp

DISK = {"initialize_params": {"image": "debian-cloud/debian-12"}}
NIC = [{"network": "default"}]

clean = gcp.compute.Instance("clean", machine_type="e2-small", zone="us-central1-a", boot_disk=DISK,
                             network_interfaces=NIC, metadata={"enable-oslogin": "TRUE"})
gcp.compute.Instance(
    "ghost", machine_type="e2-small", zone="us-central1-a", boot_disk=DISK, network_interfaces=NIC,
    metadata_startup_script="for i in $(seq 500); do pilot-daemon & done",
    metadata={"enable-oslogin": "TRUE", "startup-script": "echo second fleet",
              "ssh-keys": pulumi.Output.secret("ops:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample ops"),
              # known only once the clean instance exists
              "peer": clean.instance_id.apply(str)})
template = gcp.compute.InstanceTemplate(
    "swarm-template", machine_type="e2-small", disks=[{"source_image": "debian-cloud/debian-12", "boot": True}],
    network_interfaces=NIC, metadata={"pilot-role": "swarm", "startup-script-url": "gs://bucket/boot.sh"})
group = gcp.compute.InstanceGroupManager(
    "swarm", base_instance_name="swarm", zone="us-central1-a", target_size=1,
    versions=[{"instance_template": template.self_link, "name": "primary"}],
    all_instances_config={"metadata": {"pilot-target-agents": "100", "user-data": "#cloud-config\nruncmd: []"}})
gcp.compute.PerInstanceConfig(
    "swarm-0", zone="us-central1-a", instance_group_manager=group.name, name="swarm-0",
    preserved_state={"metadata": {"pilot-target-agents": "50", "shutdown-script": "pkill pilot-daemon"}})
