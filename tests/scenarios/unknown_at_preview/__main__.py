"""Tricks hidden in values not known at preview (each made from `seed.instance_id`, which only exists once the
seed VM does). An unknown value narrows what a rule can judge; it never switches the rule off. At preview:
- no-instance-startup-scripts rejects "late-script": metadataStartupScript is set, whatever its value;
- one-project-startup-script rejects "owner", a ProjectMetadata (it owns the whole project metadata), though an
  item beside it has a key not known at preview ("maybe-script", which preview-unknowns names);
- pilot-ports-open rejects "rv-org-denied": a new organization policy (its name not known at preview) denies the
  registry port on its network, and its rule is paired with it by reference;
- preview-unknowns names "maybe-script" (its key), "startup-script" (its value: the guards cannot be read) and
  "rv-late-project" (its project: whether it has the fleet's script cannot be told).
With every value resolved (`python -m fleet plan --up`), the same tricks are judged on their values:
"maybe-script" is a second startup-script, both items lack the guards, and "rv-late-project" is in a project
without the fleet's script."""

import pulumi_gcp as gcp

DISK = {"initialize_params": {"image": "debian-cloud/debian-12"}}
seed = gcp.compute.Instance("seed", machine_type="e2-small", zone="us-central1-a", boot_disk=DISK,
                            network_interfaces=[{"network": "default"}], metadata={"enable-oslogin": "TRUE"})
late = seed.instance_id  # not known at preview

gcp.compute.Instance("late-script", machine_type="e2-small", zone="us-central1-a", boot_disk=DISK,
                     network_interfaces=[{"network": "default"}],
                     metadata_startup_script=late.apply(lambda seed_id: f"echo {seed_id}"))

gcp.compute.ProjectMetadata("owner", metadata={"startup-script": "for i in $(seq 500); do pilot-daemon & done"})
gcp.compute.ProjectMetadataItem("maybe-script", key=late.apply(lambda _: "startup-script"), value="echo hi")
# the project's one script, its value templated with a value not known at preview, which drops the guards
gcp.compute.ProjectMetadataItem("startup-script", key="startup-script",
                                value=late.apply(lambda seed_id: f"#!/bin/bash\necho {seed_id}"))

net = gcp.compute.Network("net-org", name="net-org", auto_create_subnetworks=False)
gcp.compute.Firewall("net-org-open", network=net.name, source_ranges=["0.0.0.0/0"],
                     allows=[{"protocol": "tcp", "ports": ["9000"]}, {"protocol": "udp", "ports": ["9001"]}])
policy = gcp.compute.FirewallPolicy("org-policy", parent="organizations/123456789", short_name="org-policy")
gcp.compute.FirewallPolicyRule("org-deny-registry", firewall_policy=policy.name, priority=10, action="deny",
                               direction="INGRESS", target_resources=[net.self_link],
                               match={"src_ip_ranges": ["0.0.0.0/0"],
                                      "layer4_configs": [{"ip_protocol": "tcp", "ports": ["9000"]}]})
gcp.compute.FirewallPolicyAssociation("org-policy-on-org", name="org-policy-assoc",
                                      attachment_target="organizations/123456789", firewall_policy=policy.name)
RENDEZVOUS = {"pilot-role": "rendezvous", "pilot-registry-port": "9000", "pilot-beacon-port": "9001"}
gcp.compute.Instance("rv-org-denied", machine_type="e2-standard-4", zone="us-central1-a", boot_disk=DISK,
                     network_interfaces=[{"network": net.self_link, "access_configs": [{}]}], metadata=RENDEZVOUS)
open_net = gcp.compute.Network("net-open", name="net-open", auto_create_subnetworks=False)
gcp.compute.Firewall("net-open-pilot", network=open_net.name, source_ranges=["0.0.0.0/0"],
                     allows=[{"protocol": "tcp", "ports": ["9000"]}, {"protocol": "udp", "ports": ["9001"]}])
gcp.compute.Instance("rv-late-project", machine_type="e2-standard-4", zone="us-central1-a", boot_disk=DISK,
                     project=late.apply(lambda _: "other-project"),
                     network_interfaces=[{"network": open_net.self_link, "access_configs": [{}]}],
                     metadata=RENDEZVOUS)
