"""The prod stack planned through the Pulumi SDK's mock engine: the seed fleet, resource by resource."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleet.facts import pilot
from fleet.startup_render import render_startup_script
from fleet.vm_contract import SCRIPT_METADATA_KEYS, SCRIPT_METADATA_PREFIXES, MetadataKey

INSTANCE = "gcp:compute/instance:Instance"
FIREWALL = "gcp:compute/firewall:Firewall"
ITEM = "gcp:compute/projectMetadataItem:ProjectMetadataItem"


def of_type(plan: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in plan["resources"] if r["type"] == type_}


@pytest.fixture(scope="module")
def prod(planned) -> dict[str, Any]:
    return planned("prod")


def test_four_instances_with_the_seed_machine_types_and_zone(prod) -> None:
    instances = of_type(prod, INSTANCE)
    assert {n: r["inputs"]["machineType"] for n, r in instances.items()} == {
        "pilot-rendezvous": "e2-standard-4", "swarm-1": "e2-standard-16", "swarm-2": "n2d-highcpu-128",
        "swarm-3": "e2-standard-8"}
    assert {r["inputs"]["zone"] for r in instances.values()} == {"us-central1-a"}


def test_targets_are_instance_attributes_summing_to_9500(prod) -> None:
    instances = of_type(prod, INSTANCE)
    md = {n: r["inputs"]["metadata"] for n, r in instances.items()}
    assert md["pilot-rendezvous"]["pilot-role"] == "rendezvous"
    swarm = {n: m for n, m in md.items() if m["pilot-role"] == "swarm"}
    assert sum(int(m["pilot-target-agents"]) for m in swarm.values()) == 9500
    # agentReach vpc: agents register with the rendezvous' reserved internal address, from their own addresses
    internal = of_type(prod, "gcp:compute/address:Address")["pilot-rendezvous-internal-ip"]
    assert internal["inputs"]["addressType"] == "INTERNAL"
    rendezvous = next(h for h in prod["outputs"]["hosts"] if h["role"] == "rendezvous")
    assert instances["pilot-rendezvous"]["inputs"]["networkInterfaces"][0]["networkIp"] == rendezvous["internalIp"]
    for name, m in swarm.items():
        assert m["pilot-registry"] == f"{rendezvous['internalIp']}:9000"
        assert m["pilot-beacon"] == f"{rendezvous['internalIp']}:9001"
        assert m["pilot-version"] == pilot.PILOT_VERSION
        # as many registration addresses as a 4-minute cold start needs: its own and an alias IP range
        addresses = int(m["pilot-registration-addresses"])
        [alias] = instances[name]["inputs"]["networkInterfaces"][0]["aliasIpRanges"]
        assert addresses > 1 and 2 ** (32 - int(alias["ipCidrRange"].lstrip("/"))) >= addresses - 1


def test_no_instance_carries_a_script_key(prod) -> None:
    for name, res in of_type(prod, INSTANCE).items():
        inputs = res["inputs"]
        assert "metadataStartupScript" not in inputs, name
        keys = set(inputs["metadata"])
        assert not keys & set(SCRIPT_METADATA_KEYS), (name, keys)
        assert not any(k.startswith(SCRIPT_METADATA_PREFIXES) for k in keys), (name, keys)


def test_exactly_one_project_startup_script_item_and_no_project_metadata(prod) -> None:
    items = [r for r in prod["resources"] if r["type"] == ITEM]
    assert [i["inputs"]["key"] for i in items] == ["startup-script"]
    assert items[0]["inputs"]["value"] == render_startup_script()
    assert not [r for r in prod["resources"] if r["type"] == "gcp:compute/projectMetadata:ProjectMetadata"]


def rule(prod, name: str) -> tuple[list[str], list[str], list[str]]:
    fw = of_type(prod, FIREWALL)[name]["inputs"]
    ports = [f"{p}/{a['protocol']}" for a in fw["allows"] for p in a["ports"]]
    return ports, fw["sourceRanges"], fw["targetTags"]


def test_rendezvous_firewall_rules_and_ranges(prod) -> None:
    assert rule(prod, "pilot-rendezvous-allow-registry") == (["9000/tcp"], ["0.0.0.0/0"], ["pilot-rendezvous"])
    assert rule(prod, "pilot-rendezvous-allow-beacon") == (["9001/udp"], ["0.0.0.0/0"], ["pilot-rendezvous"])
    # the dashboard is never open to the world: operators come through IAP
    assert rule(prod, "pilot-rendezvous-allow-dashboard") == (["3000/tcp"], [pilot.IAP_RANGE], ["pilot-rendezvous"])
    assert rule(prod, "pilot-fleet-allow-ssh") == (["22/tcp"], [pilot.IAP_RANGE], ["pilot-fleet"])


def test_each_swarm_host_opens_exactly_its_agent_udp_range(prod) -> None:
    assert rule(prod, "swarm-1-allow-agents")[0] == ["10000-12999/udp"]
    assert rule(prod, "swarm-2-allow-agents")[0] == ["10000-14999/udp"]
    assert rule(prod, "swarm-3-allow-agents") == (["10000-11499/udp"], ["0.0.0.0/0"], ["pilot-swarm-swarm-3"])
    tags = {n: r["inputs"]["tags"] for n, r in of_type(prod, INSTANCE).items()}
    assert tags["swarm-3"] == ["pilot-fleet", "pilot-swarm-swarm-3"]


def test_instances_are_hardened(prod) -> None:
    accounts = {r["inputs"]["accountId"] for r in prod["resources"]
                if r["type"] == "gcp:serviceaccount/account:Account"}
    assert accounts == {"pilot-rendezvous-vm", "pilot-swarm-vm"}
    for name, res in of_type(prod, INSTANCE).items():
        i = res["inputs"]
        assert i["shieldedInstanceConfig"] == {"enableIntegrityMonitoring": True, "enableSecureBoot": True,
                                               "enableVtpm": True}, name
        assert i["serviceAccount"]["email"].startswith("pilot-"), name
        # cloud-platform: the one scope Secret Manager takes, for the rendezvous alone (its account reads one secret)
        wide = [s for s in i["serviceAccount"]["scopes"] if s.endswith("cloud-platform")]
        assert not wide or (name == "pilot-rendezvous" and i["metadata"][MetadataKey.REGISTRY_KEY_SECRET]), name
        md = i["metadata"]
        assert (md["enable-oslogin"], md["block-project-ssh-keys"], md["serial-port-enable"]) == ("TRUE", "TRUE",
                                                                                                  "FALSE")
        assert i["bootDisk"]["initializeParams"]["image"] == "debian-cloud/debian-12"
        assert i["labels"]["app"] == "pilot-fleet" and i["labels"]["stack"] == "prod"


def test_rendezvous_has_static_ip_and_durable_store(prod) -> None:
    address = of_type(prod, "gcp:compute/address:Address")["pilot-rendezvous-ip"]["inputs"]
    assert address["addressType"] == "EXTERNAL"
    rendezvous = of_type(prod, INSTANCE)["pilot-rendezvous"]["inputs"]
    assert rendezvous["networkInterfaces"][0]["accessConfigs"][0]["natIp"] == prod["outputs"]["rendezvousIp"]
    [disk] = rendezvous["attachedDisks"]
    assert disk["deviceName"] == rendezvous["metadata"]["pilot-store-device"] == "pilot-store"


def test_components_parent_their_resources(prod) -> None:
    by_urn = {r["urn"]: r for r in prod["resources"]}
    instance = of_type(prod, INSTANCE)["swarm-2"]
    assert by_urn[instance["parent"]]["type"] == "pilot-fleet:fleet:SwarmHost"
    assert of_type(prod, FIREWALL)["pilot-rendezvous-allow-beacon"]["parent"] == \
        of_type(prod, "pilot-fleet:fleet:Rendezvous")["pilot-rendezvous"]["urn"]


def test_outputs_schema(prod) -> None:
    out = prod["outputs"]
    ip = out["rendezvousIp"]
    assert out["schemaVersion"] == 2
    # schema 2: where monitoring scrapes comes from the outputs (a stack may move any of these)
    assert out["ports"] == {"registry": 9000, "beacon": 9001, "dashboard": 3000, "health": 8081}
    internal = next(h for h in out["hosts"] if h["role"] == "rendezvous")["internalIp"]  # agentReach vpc
    assert out["registryEndpoint"] == f"{internal}:9000" and out["beaconEndpoint"] == f"{internal}:9001"
    assert out["statsUrl"] == f"http://{ip}:3000/api/stats" and out["dashboardUrl"] == f"http://{ip}:3000/"
    assert out["expectedAgents"] == 9500
    assert out["expectedAgentsByHost"] == {"swarm-1": 3000, "swarm-2": 5000, "swarm-3": 1500}
    assert out["alertThreshold"] == 0.95 and out["alertMinOnline"] == 9025
    hosts = {h["name"]: h for h in out["hosts"]}
    assert set(hosts) == {"pilot-rendezvous", "swarm-1", "swarm-2", "swarm-3"}
    assert hosts["swarm-2"] == {"name": "swarm-2", "role": "swarm", "zone": "us-central1-a",
                                "machineType": "n2d-highcpu-128", "targetAgents": 5000, "udpPorts": "10000-14999",
                                "internalIp": hosts["swarm-2"]["internalIp"],
                                "externalIp": hosts["swarm-2"]["externalIp"]}
    assert all(h["internalIp"] and h["externalIp"] for h in hosts.values())


def test_dev_stack_plans(planned) -> None:
    dev = planned("dev")
    assert len(of_type(dev, INSTANCE)) == 3 and dev["outputs"]["expectedAgents"] == 200  # the rendezvous, 2 hosts


ROOT = "pilot-fleet:fleet:Fleet"
# dev's and scale's store disks are regional (failoverZone), prod's zonal
STORE_ATTACHMENT = {
    "dev": "gcp:compute/regionDiskResourcePolicyAttachment:RegionDiskResourcePolicyAttachment",
    "prod": "gcp:compute/diskResourcePolicyAttachment:DiskResourcePolicyAttachment",
    "scale": "gcp:compute/regionDiskResourcePolicyAttachment:RegionDiskResourcePolicyAttachment",
}
BEFORE_ROOT = json.loads((Path(__file__).with_name("data") / "resources_before_root_component.json").read_text())


REGISTRY_TLS = "pilot-fleet:fleet:RegistryTls"


CLOUD_MONITORING = "pilot-fleet:monitoring:CloudMonitoring"


def _ancestry(plan: dict[str, Any]) -> list[str]:
    """Every resource as "its ancestors' types/its type::its name", the root component left out."""
    by_urn = {r["urn"]: r for r in plan["resources"]}
    out = []
    for r in plan["resources"]:
        if r["type"] == ROOT:
            continue
        types, parent = [r["type"]], r["parent"]
        while parent in by_urn:
            if by_urn[parent]["type"] != ROOT:
                types.insert(0, by_urn[parent]["type"])
            parent = by_urn[parent]["parent"]
        out.append("/".join(types) + "::" + r["name"])
    return sorted(out)


@pytest.mark.parametrize("stack", ["dev", "prod", "scale"])
def test_the_root_component_moves_no_resource_of_an_existing_stack(planned, stack: str) -> None:
    """The fleet's root component (pilot-fleet:fleet:Fleet) came after stacks were deployed without it. Each of its
    children carries the alias `noParent` (it was the stack's child), which Pulumi carries on to their own children,
    and below the root every resource keeps its type, name and ancestry as they were recorded before the root
    (tests/data): so `pulumi up` maps every old resource onto its new URN and replaces nothing."""
    plan = planned(stack)
    ancestry = _ancestry(plan)
    assert set(BEFORE_ROOT[stack]) <= set(ancestry)
    # added since, and nothing else: the rendezvous' reserved internal address (agentReach vpc), the store disk's
    # snapshot schedule and its attachment, and the registry's TLS (its component and what it holds)
    added = sorted(a.split("::")[0] for a in set(ancestry) - set(BEFORE_ROOT[stack]))
    tls = sorted(a.removeprefix(f"{REGISTRY_TLS}/") for a in added if a.startswith(REGISTRY_TLS))
    assert tls == ["gcp:secretmanager/secret:Secret", "gcp:secretmanager/secretIamMember:SecretIamMember",
                   "gcp:secretmanager/secretVersion:SecretVersion", REGISTRY_TLS, "tls:index/privateKey:PrivateKey",
                   "tls:index/selfSignedCert:SelfSignedCert"], tls
    added = [a for a in added if not a.startswith(REGISTRY_TLS)]
    # Cloud Monitoring where the stack asks for it (scale): its component, a policy per alert and the dashboard
    monitoring = [a for a in added if a.startswith(CLOUD_MONITORING)]
    assert monitoring == ([CLOUD_MONITORING, *[f"{CLOUD_MONITORING}/gcp:monitoring/alertPolicy:AlertPolicy"] * 4,
                           f"{CLOUD_MONITORING}/gcp:monitoring/dashboard:Dashboard"] if stack == "scale" else [])
    added = [a for a in added if not a.startswith(CLOUD_MONITORING)]
    assert len(added) == 3 and added[0].endswith("/gcp:compute/address:Address"), added
    assert added[1].endswith(STORE_ATTACHMENT[stack])
    assert added[2].endswith("/gcp:compute/resourcePolicy:ResourcePolicy")
    root = next(r["urn"] for r in plan["resources"] if r["type"] == ROOT)
    children = [r for r in plan["resources"] if r["parent"] == root]
    assert children and all(r["options"]["aliases"] == [{"spec": {"noParent": True}}] for r in children)
    assert all(r["parent"] == root for r in plan["resources"] if r["type"].startswith("pilot-fleet:fleet:")
               and r["type"] != ROOT)
