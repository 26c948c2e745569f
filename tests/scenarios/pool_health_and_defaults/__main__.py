"""Swarm pools whose autohealing would recreate every VM in a loop, or whose rollout would take every VM down, only
because of what the API does with what the program leaves out or gets wrong; and the legitimate shapes beside them.

`pools-heal-safely` must name exactly:
- "wrong-port": its health check probes 8080, the supervisor serves /healthz on 8081 (the contract's default);
- "default-port": its HTTP check sets no port: the API probes 80;
- "tcp-probe": a TCP probe on the right port (the supervisor's /healthz is HTTP: a bare port check passes while
  the agents are dead, and the issue asks that the probe be the supervisor's);
- "wrong-path": its HTTP check asks for "/", not /healthz;
- "regional-default": a regional group of 2 VMs in 2 zones with an update policy that leaves maxUnavailable unset:
  the API's default is the number of zones, 2, so a rollout takes both down.
and accept:
- "moved": the template moves the supervisor to 9081 (pilot-health-port) and the check probes 9081;
- "named": the check probes the group's named port "health" (8081);
- "regional-zero": a regional group with maxUnavailableFixed 0 and a surge of 2.
"""

import pulumi_gcp as gcp

BOOT = {"source_image": "debian-cloud/debian-12", "boot": True, "auto_delete": True}
STATE = {"device_name": "pilot-agents-state", "disk_size_gb": 10, "boot": False, "auto_delete": False}
KEEP = [{"device_name": "pilot-agents-state", "delete_rule": "NEVER"}]
HEALTH_RANGES = ["35.191.0.0/16", "130.211.0.0/22"]

network = gcp.compute.Network("pilot-net", name="pilot-net", auto_create_subnetworks=False)
gcp.compute.Firewall("health-checkers", network=network.self_link, direction="INGRESS", source_ranges=HEALTH_RANGES,
                     allows=[{"protocol": "tcp", "ports": ["8081", "9081"]}], target_tags=["pilot-swarm"])


def template(name: str, **metadata: str) -> gcp.compute.InstanceTemplate:
    return gcp.compute.InstanceTemplate(
        name, machine_type="e2-highmem-2", disks=[BOOT, STATE], tags=["pilot-swarm"],
        network_interfaces=[{"network": network.self_link}],
        metadata={"pilot-role": "swarm", "pilot-target-agents": "100", "pilot-state-device": "pilot-agents-state",
                  **metadata})


def pool(name: str, check: dict, *, regional: bool = False, update: dict | None = None, metadata: dict | None = None,
         **extra: object) -> None:
    health = gcp.compute.HealthCheck(f"{name}-health", **check)
    kind = gcp.compute.RegionInstanceGroupManager if regional else gcp.compute.InstanceGroupManager
    where = {"region": "us-central1", "distribution_policy_zones": ["us-central1-a", "us-central1-b"]} if regional \
        else {"zone": "us-central1-a"}
    kind(name, base_instance_name=name, target_size=2, stateful_disks=KEEP,
         versions=[{"instance_template": template(f"{name}-template", **(metadata or {})).self_link,
                    "name": "primary"}],
         auto_healing_policies={"health_check": health.id, "initial_delay_sec": 1800},
         update_policy=update or {"type": "PROACTIVE", "minimal_action": "REFRESH", "max_surge_fixed": 0,
                                  "max_unavailable_fixed": 1, "replacement_method": "RECREATE"},
         **where, **extra)


pool("wrong-port", {"http_health_check": {"port": 8080, "request_path": "/healthz"}})
pool("default-port", {"http_health_check": {"request_path": "/healthz"}})
pool("tcp-probe", {"tcp_health_check": {"port": 8081}})
pool("wrong-path", {"http_health_check": {"port": 8081}})
pool("regional-default", {"http_health_check": {"port": 8081, "request_path": "/healthz"}}, regional=True,
     update={"type": "PROACTIVE", "minimal_action": "REFRESH", "max_surge_fixed": 2})
pool("moved", {"http_health_check": {"port": 9081, "request_path": "/healthz"}}, metadata={"pilot-health-port": "9081"})
pool("named", {"http_health_check": {"port_specification": "USE_NAMED_PORT", "port_name": "health",
                                     "request_path": "/healthz"}}, named_ports=[{"name": "health", "port": 8081}])
pool("regional-zero", {"http_health_check": {"port": 8081, "request_path": "/healthz"}}, regional=True,
     update={"type": "PROACTIVE", "minimal_action": "REFRESH", "max_surge_fixed": 2, "max_unavailable_fixed": 0})
