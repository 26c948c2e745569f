"""Firewall policies beside the VPC rules, in Compute Engine's order: hierarchical policies (organization, then
folders) first; then, per network, the VPC rules and the network's global and regional firewall policies, VPC rules
first unless the network says BEFORE_CLASSIC_FIREWALL. `allow` and `deny` end the evaluation; `goto_next` passes on.

One rendezvous per network; `pilot-ports-open` must reject exactly:
- "rv-deny-first": its network evaluates policies first, and a global policy denies the registry port;
- "rv-regional-deny": the same with a regional policy of the VM's region;
- "rv-folder-deny": a folder's hierarchical policy denies the beacon port on its network (target resources);
- "rv-goto-next-closed": an organization policy's goto_next hands its traffic on, and nothing after allows it;
and accept:
- "rv-deny-after": the same policy deny as rv-deny-first, but its network keeps the default order, so the VPC rule
  that allows decides first;
- "rv-policy-only": no VPC rule opens anything; a network firewall policy allows both ports;
- "rv-goto-next": an organization policy's goto_next hands its traffic on to the VPC rules, which allow it.
Every network's VPC rule opens 9000/tcp and 9001/udp to 0.0.0.0/0, except rv-policy-only's and rv-goto-next-closed's."""

import pulumi_gcp as gcp

from fleet.components.startup_script import ProjectStartupScript, ProjectStartupScriptArgs

RENDEZVOUS = {"pilot-role": "rendezvous", "pilot-registry-port": "9000", "pilot-beacon-port": "9001"}
BOTH = [{"ip_protocol": "tcp", "ports": ["9000"]}, {"ip_protocol": "udp", "ports": ["9001"]}]
REGISTRY = [{"ip_protocol": "tcp", "ports": ["9000"]}]
BEACON = [{"ip_protocol": "udp", "ports": ["9001"]}]
WORLD = ["0.0.0.0/0"]


def network(name: str, *, vpc_allows: bool = True, policies_first: bool = False) -> gcp.compute.Network:
    order = {"network_firewall_policy_enforcement_order": "BEFORE_CLASSIC_FIREWALL"} if policies_first else {}
    net = gcp.compute.Network(name, name=name, auto_create_subnetworks=False, **order)
    if vpc_allows:
        gcp.compute.Firewall(f"{name}-open", network=net.name, source_ranges=WORLD,
                             allows=[{"protocol": "tcp", "ports": ["9000"]}, {"protocol": "udp", "ports": ["9001"]}])
    return net


def rendezvous(name: str, net: gcp.compute.Network) -> None:
    gcp.compute.Instance(name, machine_type="e2-standard-4", zone="us-central1-a",
                         boot_disk={"initialize_params": {"image": "debian-cloud/debian-12"}},
                         network_interfaces=[{"network": net.self_link, "access_configs": [{}]}], metadata=RENDEZVOUS)


def network_policy(name: str, net: gcp.compute.Network, net_name: str, action: str, layer4: list[dict], *,
                   region: str | None = None) -> None:
    if region:
        policy = gcp.compute.RegionNetworkFirewallPolicy(name, name=name, region=region)
        gcp.compute.RegionNetworkFirewallPolicyRule(
            f"{name}-rule", firewall_policy=policy.name, region=region, priority=100, action=action,
            direction="INGRESS", match={"src_ip_ranges": WORLD, "layer4_configs": layer4})
        gcp.compute.RegionNetworkFirewallPolicyAssociation(f"{name}-on-{net_name}", name=f"{name}-assoc",
                                                           region=region, attachment_target=net.id,
                                                           firewall_policy=policy.name)
        return
    policy = gcp.compute.NetworkFirewallPolicy(name, name=name)
    gcp.compute.NetworkFirewallPolicyRule(f"{name}-rule", firewall_policy=policy.name, priority=100, action=action,
                                          direction="INGRESS", match={"src_ip_ranges": WORLD, "layer4_configs": layer4})
    gcp.compute.NetworkFirewallPolicyAssociation(f"{name}-on-{net_name}", name=f"{name}-assoc",
                                                 attachment_target=net.id, firewall_policy=policy.name)


def hierarchical_policy(name: str, node: str, action: str, layer4: list[dict], target: gcp.compute.Network) -> None:
    policy = gcp.compute.FirewallPolicy(name, parent=node, short_name=name)
    gcp.compute.FirewallPolicyRule(f"{name}-rule", firewall_policy=policy.id, priority=10, action=action,
                                   direction="INGRESS", target_resources=[target.self_link],
                                   match={"src_ip_ranges": WORLD, "layer4_configs": layer4})
    gcp.compute.FirewallPolicyAssociation(f"{name}-on-{node}", name=f"{name}-assoc", attachment_target=node,
                                          firewall_policy=policy.id)


net_a = network("net-a", policies_first=True)
network_policy("deny-registry-a", net_a, "net-a", "deny", REGISTRY)
rendezvous("rv-deny-first", net_a)

net_b = network("net-b")
network_policy("deny-registry-b", net_b, "net-b", "deny", REGISTRY)
rendezvous("rv-deny-after", net_b)

net_c = network("net-c", vpc_allows=False)
network_policy("allow-pilot-c", net_c, "net-c", "allow", BOTH)
rendezvous("rv-policy-only", net_c)

net_d = network("net-d", policies_first=True)
network_policy("deny-registry-d", net_d, "net-d", "deny", REGISTRY, region="us-central1")
rendezvous("rv-regional-deny", net_d)

net_e = network("net-e")
hierarchical_policy("fleet-folder-guard", "folders/123456", "deny", BEACON, net_e)
rendezvous("rv-folder-deny", net_e)

net_f = network("net-f")
hierarchical_policy("org-hand-on", "organizations/789", "goto_next", BOTH, net_f)
rendezvous("rv-goto-next", net_f)

net_g = network("net-g", vpc_allows=False)
hierarchical_policy("org-hand-on-closed", "organizations/789", "goto_next", BOTH, net_g)
rendezvous("rv-goto-next-closed", net_g)

ProjectStartupScript("startup-script", ProjectStartupScriptArgs(project="svc-project"))
