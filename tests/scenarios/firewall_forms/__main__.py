"""Firewall rules in the forms Compute Engine takes beside the usual ones: protocols by IP protocol number ("6" is
tcp, "17" udp), and sources by network tag (the VMs that carry the tag, not every address).

One rendezvous per network; `pilot-ports-open` must reject exactly:
- "rv-deny-by-number": its network opens the registry, and a deny of protocol "6" port 9000 at a better priority
  closes it;
- "rv-deny-swarm-tag": a deny from the tag a swarm VM of the fleet carries, so the agents' registrations are dropped;
- "rv-allow-elsewhere": the only rule that opens its ports is limited to destination ranges that are not its own;
and accept:
- "rv-by-number": its network opens 9000 and 9001 by protocol number only;
- "rv-quarantine": a deny from a tag only a VM outside the fleet carries (a quarantine), which touches no agent;
- "rv-two-halves": its ports opened to 0.0.0.0/1 and 128.0.0.0/1 in one rule, the whole of IPv4;
- "rv-deny-elsewhere": a deny of the registry port limited to destination ranges that are not its addresses (both
  set by the program: 10.40.0.5, 198.51.100.7)."""

import pulumi_gcp as gcp

DISK = {"initialize_params": {"image": "debian-cloud/debian-12"}}
RENDEZVOUS = {"pilot-role": "rendezvous", "pilot-registry-port": "9000", "pilot-beacon-port": "9001"}
OPEN_BY_NAME = [{"protocol": "tcp", "ports": ["9000"]}, {"protocol": "udp", "ports": ["9001"]}]


def rendezvous(name: str, allows: list[dict], deny: dict | None = None, *, sources: list[str] | None = None,
               open_to: list[str] | None = None, nic: dict | None = None) -> gcp.compute.Network:
    net = gcp.compute.Network(f"net-{name}", name=f"net-{name}", auto_create_subnetworks=False)
    gcp.compute.Firewall(f"{name}-open", network=net.name, source_ranges=sources or ["0.0.0.0/0"], allows=allows,
                         **({"destination_ranges": open_to} if open_to else {}))
    if deny is not None:
        gcp.compute.Firewall(f"{name}-deny", network=net.name, priority=100, target_tags=["rendezvous"], **deny)
    gcp.compute.Instance(name, machine_type="e2-standard-4", zone="us-central1-a", boot_disk=DISK, tags=["rendezvous"],
                         network_interfaces=[{"network": net.self_link, "access_configs": [{}], **(nic or {})}],
                         metadata=RENDEZVOUS)
    return net


rendezvous("rv-by-number", [{"protocol": "6", "ports": ["9000"]}, {"protocol": "17", "ports": ["9001"]}])
rendezvous("rv-deny-by-number", OPEN_BY_NAME,
           {"denies": [{"protocol": "6", "ports": ["9000"]}], "source_ranges": ["0.0.0.0/0"]})
quarantine = rendezvous("rv-quarantine", OPEN_BY_NAME,
                        {"denies": [{"protocol": "all"}], "source_tags": ["quarantined"]})
gcp.compute.Instance("suspect", machine_type="e2-small", zone="us-central1-a", boot_disk=DISK, tags=["quarantined"],
                     network_interfaces=[{"network": quarantine.self_link}])
swarm_net = rendezvous("rv-deny-swarm-tag", OPEN_BY_NAME,
                       {"denies": [{"protocol": "tcp", "ports": ["9000"]}], "source_tags": ["pilot-swarm-a"]})
gcp.compute.Instance("swarm-a", machine_type="e2-standard-8", zone="us-central1-a", boot_disk=DISK,
                     tags=["pilot-swarm-a"], network_interfaces=[{"network": swarm_net.self_link}],
                     metadata={"pilot-role": "swarm", "pilot-target-agents": "100", "pilot-base-udp-port": "20000"})
gcp.compute.Firewall("swarm-a-agents", network=swarm_net.name, source_ranges=["0.0.0.0/0"],
                     target_tags=["pilot-swarm-a"], allows=[{"protocol": "udp", "ports": ["20000-20099"]}])
rendezvous("rv-two-halves", OPEN_BY_NAME, sources=["0.0.0.0/1", "128.0.0.0/1"])
rendezvous("rv-allow-elsewhere", OPEN_BY_NAME, open_to=["192.0.2.0/24"])
rendezvous("rv-deny-elsewhere", OPEN_BY_NAME, {"denies": [{"protocol": "tcp", "ports": ["9000"]}],
                                               "source_ranges": ["0.0.0.0/0"], "destination_ranges": ["192.0.2.0/24"]},
           nic={"network_ip": "10.40.0.5", "access_configs": [{"nat_ip": "198.51.100.7"}]})
