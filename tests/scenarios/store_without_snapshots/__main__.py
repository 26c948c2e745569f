"""A rendezvous with its registry's store on a disk of its own, but no snapshot schedule on that disk: losing the
disk loses the registry (`rendezvous-store-snapshots` must reject the disk). A schedule on another disk does not
count: the pack pairs the attachment with the disk by reference."""

import pulumi_gcp as gcp

store = gcp.compute.Disk("registry-store", zone="us-central1-a", size=10, type="pd-balanced")
other = gcp.compute.Disk("scratch", zone="us-central1-a", size=10, type="pd-balanced")
schedule = gcp.compute.ResourcePolicy(
    "hourly", region="us-central1",
    snapshot_schedule_policy={"schedule": {"hourly_schedule": {"hours_in_cycle": 1, "start_time": "00:00"}},
                              "retention_policy": {"max_retention_days": 7}})
gcp.compute.DiskResourcePolicyAttachment("scratch-snapshots", disk=other.name, zone="us-central1-a",
                                         name=schedule.name)
gcp.compute.Instance(
    "rendezvous",
    machine_type="e2-standard-4",
    zone="us-central1-a",
    boot_disk={"initialize_params": {"image": "debian-cloud/debian-12"}},
    network_interfaces=[{"network": "default", "access_configs": [{}]}],
    attached_disks=[{"source": store.self_link, "device_name": "pilot-store"},
                    {"source": other.self_link, "device_name": "scratch"}],
    metadata={"pilot-role": "rendezvous"},
)
