"""Swarm pools the pack used to pair with the wrong template, or none, because it compared name strings:
- "swarm" and "swarm-small": names sharing a prefix, each with an autonamed template (Pulumi's default);
- "swarm" also runs a canary version on a second template;
- "swarm-regional": a regional group on a regional template;
- "swarm-unique": a group on a template referenced by its unique self link (what the provider recommends).
Only "swarm-small"'s template and "swarm"'s canary lack the agent state disk: `pools-keep-agent-state` must name
exactly those two groups, and pass the others."""

import pulumi_gcp as gcp

SWARM = {"pilot-role": "swarm", "pilot-target-agents": "100", "pilot-state-device": "pilot-agents-state"}
BOOT = {"source_image": "debian-cloud/debian-12", "boot": True, "auto_delete": True}
STATE = {"device_name": "pilot-agents-state", "disk_size_gb": 10, "boot": False, "auto_delete": False}
NIC = [{"network": "default"}]
KEEP = [{"device_name": "pilot-agents-state", "delete_rule": "NEVER"}]
HEALING = {"initial_delay_sec": 1800}


def template(name: str, disks: list[dict], regional: bool = False) -> gcp.compute.InstanceTemplate:
    kind = gcp.compute.RegionInstanceTemplate if regional else gcp.compute.InstanceTemplate
    extra = {"region": "us-central1"} if regional else {}
    return kind(name, machine_type="e2-highmem-2", disks=disks, network_interfaces=NIC, metadata=SWARM, **extra)


def group(name: str, versions: list[dict], **where: object) -> None:
    kind = gcp.compute.RegionInstanceGroupManager if "region" in where else gcp.compute.InstanceGroupManager
    health = gcp.compute.HealthCheck(f"{name}-health", http_health_check={"port": 8081, "request_path": "/healthz"})
    kind(name, base_instance_name=name, target_size=2, versions=versions, stateful_disks=KEEP,
         auto_healing_policies={"health_check": health.id, **HEALING},
         update_policy={"type": "PROACTIVE", "minimal_action": "REFRESH", "max_surge_fixed": 0,
                        "max_unavailable_fixed": 1, "replacement_method": "RECREATE"}, **where)


swarm = template("swarm", [BOOT, STATE])
canary = template("swarm-canary", [BOOT])  # no state disk
small = template("swarm-small", [BOOT])  # no state disk
regional = template("swarm-regional", [BOOT, STATE], regional=True)
group("swarm", [{"instance_template": swarm.self_link, "name": "primary"},
                {"instance_template": canary.self_link, "name": "canary", "target_size": {"fixed": 1}}],
      zone="us-central1-a")
group("swarm-small", [{"instance_template": small.self_link, "name": "primary"}], zone="us-central1-a")
group("swarm-regional", [{"instance_template": regional.self_link, "name": "primary"}], region="us-central1",
      distribution_policy_zones=["us-central1-a", "us-central1-b"])
unique = template("swarm-unique", [BOOT, STATE])
group("swarm-unique", [{"instance_template": unique.self_link_unique, "name": "primary"}], zone="us-central1-b")
