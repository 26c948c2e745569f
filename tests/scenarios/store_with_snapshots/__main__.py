"""The legitimate shape of the store_without_snapshots scenario, written differently from the fleet's own program:
an autonamed regional store disk, its snapshot schedule attached by reference (`rendezvous-store-snapshots` must
accept it)."""

import pulumi_gcp as gcp

store = gcp.compute.RegionDisk("registry-store", region="us-central1", size=10, type="pd-balanced",
                               replica_zones=["us-central1-a", "us-central1-b"])
schedule = gcp.compute.ResourcePolicy(
    "every-two-hours", region="us-central1",
    snapshot_schedule_policy={"schedule": {"hourly_schedule": {"hours_in_cycle": 2, "start_time": "00:00"}},
                              "retention_policy": {"max_retention_days": 3}})
gcp.compute.RegionDiskResourcePolicyAttachment("store-snapshots", disk=store.name, region="us-central1",
                                               name=schedule.name)
gcp.compute.Instance(
    "rendezvous",
    machine_type="e2-standard-4",
    zone="us-central1-a",
    boot_disk={"initialize_params": {"image": "debian-cloud/debian-12"}},
    network_interfaces=[{"network": "default", "access_configs": [{}]}],
    attached_disks=[{"source": store.self_link, "device_name": "pilot-store", "force_attach": True}],
    metadata={"pilot-role": "rendezvous"},
)
