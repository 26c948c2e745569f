"""Firewall policies that declare their rules inline (the *WithRules resources), and secure tags bound to a VM by
a TagBinding, which a policy rule targets. Each rendezvous has its own network whose VPC rule opens 9000/tcp and
9001/udp to everyone; policies are evaluated first on each (BEFORE_CLASSIC_FIREWALL).

`pilot-ports-open` must reject exactly:
- "rv-inline-deny": a NetworkFirewallPolicyWithRules on its network denies the registry port in its own rules;
- "rv-tag-denied": a policy rule denies the registry port to VMs carrying a secure tag, which a TagBinding binds to
  this VM (its parent is the VM's numeric id: paired by reference);
and accept "rv-inline-allow" (the inline rule allows both ports) and "rv-untagged" (the same tag-targeted deny on
its network, but no binding gives it the tag); `types-the-pack-judges` rejects "bulk-tags", a TagBindingCollection
the pack cannot read."""

import pulumi_gcp as gcp

DISK = {"initialize_params": {"image": "debian-cloud/debian-12"}}
RENDEZVOUS = {"pilot-role": "rendezvous", "pilot-registry-port": "9000", "pilot-beacon-port": "9001"}
REGISTRY = [{"ip_protocol": "tcp", "ports": ["9000"]}]
BOTH = [{"ip_protocol": "tcp", "ports": ["9000"]}, {"ip_protocol": "udp", "ports": ["9001"]}]


def rendezvous(name: str) -> tuple[gcp.compute.Network, gcp.compute.Instance]:
    net = gcp.compute.Network(f"net-{name}", name=f"net-{name}", auto_create_subnetworks=False,
                              network_firewall_policy_enforcement_order="BEFORE_CLASSIC_FIREWALL")
    gcp.compute.Firewall(f"{name}-open", network=net.name, source_ranges=["0.0.0.0/0"],
                         allows=[{"protocol": "tcp", "ports": ["9000"]}, {"protocol": "udp", "ports": ["9001"]}])
    vm = gcp.compute.Instance(name, machine_type="e2-standard-4", zone="us-central1-a", boot_disk=DISK,
                              network_interfaces=[{"network": net.self_link, "access_configs": [{}]}],
                              metadata=RENDEZVOUS)
    return net, vm


def inline_policy(name: str, net: gcp.compute.Network, action: str, layer4: list[dict]) -> None:
    policy = gcp.compute.NetworkFirewallPolicyWithRules(
        name, name=name, rules=[{"priority": 100, "action": action, "direction": "INGRESS",
                                 "match": {"src_ip_ranges": ["0.0.0.0/0"], "layer4_configs": layer4}}])
    gcp.compute.NetworkFirewallPolicyAssociation(f"{name}-on-net", name=f"{name}-assoc", attachment_target=net.id,
                                                 firewall_policy=policy.name)


net_deny, _ = rendezvous("rv-inline-deny")
inline_policy("inline-deny", net_deny, "deny", REGISTRY)
net_allow, _ = rendezvous("rv-inline-allow")
inline_policy("inline-allow", net_allow, "allow", BOTH)

key = gcp.tags.TagKey("quarantine", parent="organizations/123456789", short_name="quarantine",
                      purpose="GCE_FIREWALL", purpose_data={"network": "scenario-project/net-rv-tag-denied"})
value = gcp.tags.TagValue("quarantined", parent=key.id, short_name="quarantined")


def tag_deny(name: str, net: gcp.compute.Network) -> None:
    policy = gcp.compute.NetworkFirewallPolicy(name, name=name)
    gcp.compute.NetworkFirewallPolicyRule(f"{name}-rule", firewall_policy=policy.name, priority=100, action="deny",
                                          direction="INGRESS", target_secure_tags=[{"name": value.name}],
                                          match={"src_ip_ranges": ["0.0.0.0/0"], "layer4_configs": REGISTRY})
    gcp.compute.NetworkFirewallPolicyAssociation(f"{name}-on-net", name=f"{name}-assoc", attachment_target=net.id,
                                                 firewall_policy=policy.name)


net_tagged, tagged = rendezvous("rv-tag-denied")
tag_deny("tag-deny-a", net_tagged)
gcp.tags.TagBinding("bind-quarantine", tag_value=value.name, parent=tagged.instance_id.apply(
    lambda vm_id: f"//compute.googleapis.com/projects/scenario-project/zones/us-central1-a/instances/{vm_id}"))
net_untagged, _ = rendezvous("rv-untagged")
tag_deny("tag-deny-b", net_untagged)
gcp.tags.TagBindingCollection("bulk-tags", location="global",
                              full_resource_name="//cloudresourcemanager.googleapis.com/projects/scenario-project",
                              tags={"123456789/env": "prod"})
