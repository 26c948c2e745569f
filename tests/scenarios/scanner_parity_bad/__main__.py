"""What the usual scanners flag on Compute Engine, one resource each (the advisories' Checkov IDs):
CKV_GCP_34 a VM that turns OS Login off for itself, CKV_GCP_36 IP forwarding, CKV_GCP_40 a public IP on a VM that
is not a fleet VM, CKV_GCP_38 a disk with Google-managed keys only, CKV2_GCP_12 a rule open on every port to the
internet, CKV_GCP_27 a VM and a rule on the default network."""

import pulumi_gcp as gcp

KEY = {"kms_key_self_link": "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"}
PRIVATE = [{"subnetwork": "projects/scenario-project/regions/us-central1/subnetworks/private"}]


def vm(name: str, **changes: object) -> None:
    args: dict = {"machine_type": "e2-small", "zone": "us-central1-a",
                  "boot_disk": {"initialize_params": {"image": "debian-cloud/debian-12"}, **KEY},
                  "network_interfaces": PRIVATE, "metadata": {"enable-oslogin": "TRUE"}}
    args.update(changes)
    gcp.compute.Instance(name, **args)


vm("oslogin-off", metadata={"enable-oslogin": "FALSE"})
vm("forwarder", can_ip_forward=True)
vm("public", network_interfaces=[{"subnetwork": PRIVATE[0]["subnetwork"], "access_configs": [{}]}])
vm("google-keys", boot_disk={"initialize_params": {"image": "debian-cloud/debian-12"}})
vm("on-default", network_interfaces=[{"network": "default"}])
gcp.compute.Firewall("all-ports", network="private", direction="INGRESS", source_ranges=["0.0.0.0/0"],
                     allows=[{"protocol": "tcp"}])
gcp.compute.Firewall("default-web", network="default", direction="INGRESS", source_ranges=["10.0.0.0/8"],
                     allows=[{"protocol": "tcp", "ports": ["443"]}])
