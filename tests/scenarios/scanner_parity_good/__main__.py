"""The legitimate shapes of scanner_parity_bad: OS Login on, no forwarding, no external IP, a customer-managed key
on every disk, a custom network, a rule open to the internet on one port only, a disabled rule open on every port.
None of the six advisories may fire (the fleet's own VMs keep their external IPs: the rendezvous is reached at it,
swarm VMs download through it)."""

import pulumi_gcp as gcp

KEY = {"kms_key_self_link": "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"}
gcp.compute.Instance(
    "private", machine_type="e2-small", zone="us-central1-a",
    boot_disk={"initialize_params": {"image": "debian-cloud/debian-12"}, **KEY},
    attached_disks=[{"source": "projects/scenario-project/zones/us-central1-a/disks/data", **KEY}],
    network_interfaces=[{"subnetwork": "projects/scenario-project/regions/us-central1/subnetworks/private"}],
    metadata={"enable-oslogin": "TRUE"})
gcp.compute.Instance(
    "swarm-host", machine_type="e2-standard-2", zone="us-central1-a",
    boot_disk={"initialize_params": {"image": "debian-cloud/debian-12"}, **KEY},
    network_interfaces=[{"subnetwork": "projects/scenario-project/regions/us-central1/subnetworks/private",
                         "access_configs": [{}]}],
    metadata={"enable-oslogin": "TRUE", "pilot-role": "swarm", "pilot-target-agents": "10"})
gcp.compute.Firewall("https", network="private", direction="INGRESS", source_ranges=["0.0.0.0/0"],
                     allows=[{"protocol": "tcp", "ports": ["443"]}])
# every port to the world, but disabled: Compute Engine applies none of it
gcp.compute.Firewall("all-ports-disabled", network="private", direction="INGRESS", source_ranges=["0.0.0.0/0"],
                     allows=[{"protocol": "tcp"}], disabled=True)
