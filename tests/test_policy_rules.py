"""Each rule from a compliant baseline (the prod plan) with one field changed, run directly and over gRPC."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fleet.policy_runner.analyzer import analyze_with, running_pack
from tests.policy_harness import (
    BASELINE_ADVISORIES,
    PACK_DIR,
    UNKNOWN,
    directly,
    over_grpc,
    plan_of,
    resources_from_plan,
)
from tests.scenarios import guard_parts

Resources = list[dict[str, Any]]


@pytest.fixture(scope="module")
def stub() -> Iterator[Any]:
    with running_pack(PACK_DIR) as analyzer:
        yield analyzer


@pytest.fixture(scope="module")
def baseline(planned) -> Resources:
    return resources_from_plan(planned("prod"))


def find(resources: Resources, name: str, type_suffix: str = "") -> dict[str, Any]:
    return next(r for r in resources if r["name"] == name and r["type"].endswith(type_suffix))


def inputs(resources: Resources, name: str, type_suffix: str = "") -> dict[str, Any]:
    return find(resources, name, type_suffix)["inputs"]


def metadata(name: str, **changes: Any) -> Callable[[Resources], None]:
    def change(resources: Resources) -> None:
        md = inputs(resources, name, ":Instance")["metadata"]
        for key, value in changes.items():
            key = key.replace("_", "-")
            if value is None:
                md.pop(key, None)
            else:
                md[key] = value
    return change


def add(type_: str, name: str, props: dict[str, Any]) -> Callable[[Resources], None]:
    def change(resources: Resources) -> None:
        resources.append({"urn": f"urn:pulumi:test::pilot-fleet::{type_}::{name}", "type": type_, "name": name,
                          "inputs": props, "parent": None})
    return change


def template_of(name: str, new_name: str, **extra_metadata: str) -> Callable[[Resources], None]:
    """An instance template made from a (hardened) instance's inputs, with extra metadata."""
    def change(resources: Resources) -> None:
        props = copy.deepcopy(inputs(resources, name, ":Instance"))
        props["metadata"].update({k.replace("_", "-"): v for k, v in extra_metadata.items()})
        add(TEMPLATE, new_name, props)(resources)
    return change


def like(name: str, type_: str, new_name: str, **metadata_changes: str) -> Callable[[Resources], None]:
    """Another kind of VM made from a (hardened) instance's inputs, with metadata changed."""
    def change(resources: Resources) -> None:
        props = copy.deepcopy(inputs(resources, name, ":Instance"))
        props["metadata"].update({k.replace("_", "-"): v for k, v in metadata_changes.items()})
        add(type_, new_name, props)(resources)
    return change


def by_service_account(rule: str, vm: str) -> Callable[[Resources], None]:
    """The rule targets the service account that `vm` runs as, instead of tags."""
    def change(resources: Resources) -> None:
        props = inputs(resources, rule, ":Firewall")
        props.pop("targetTags", None)
        props["targetServiceAccounts"] = [inputs(resources, vm, ":Instance")["serviceAccount"]["email"]]
    return change


def source_tags_only(rule: str) -> Callable[[Resources], None]:
    """The rule admits VMs of the network by tag, not the agents' outside ranges."""
    def change(resources: Resources) -> None:
        props = inputs(resources, rule, ":Firewall")
        props.pop("sourceRanges", None)
        props["sourceTags"] = ["pilot-fleet"]
    return change


def set_input(name: str, type_suffix: str, key: str, value: Any) -> Callable[[Resources], None]:
    def change(resources: Resources) -> None:
        inputs(resources, name, type_suffix)[key] = value
    return change


def both(*changes: Callable[[Resources], None]) -> Callable[[Resources], None]:
    def change(resources: Resources) -> None:
        for each in changes:
            each(resources)
    return change


def remove(name: str, type_suffix: str) -> Callable[[Resources], None]:
    def change(resources: Resources) -> None:
        resources.remove(find(resources, name, type_suffix))
    return change


COMMENTED_ONLY = "#!/bin/bash\nset -euo pipefail\n# flock boot_id kernel.pid_max fs.file-max fs.nr_open\necho hi\n"
# The fleet's own prologue, as a working script would start (startup/common.sh), and what follows it.
PROLOGUE, TUNING = guard_parts.PROLOGUE, guard_parts.TUNING
# the guards present but skipped: after an unconditional exit, or inside a heredoc that only prints them
GUARDS_AFTER_EXIT = PROLOGUE.replace('mkdir -p "${RUN_DIR}"\n', 'mkdir -p "${RUN_DIR}"\nexit 0\n') + TUNING
GUARDS_IN_HEREDOC = ("#!/bin/bash\nset -euo pipefail\ncat <<'X'\n" + PROLOGUE.split("\n", 2)[2] + "X\n" + TUNING)
# the guard rule reads the script as bash does (policies/fleet_policies/shell.py), so each of these is caught:
APPLY = "sysctl -q -p /etc/sysctl.d/60-pilot.conf\n"
GUARD_TRICKS = {
    # the keys are data in a heredoc: the call that applies them deleted, or commented out
    "the tuning's apply deleted": PROLOGUE + TUNING.replace(APPLY, ""),
    "the tuning's apply commented out": PROLOGUE + TUNING.replace(APPLY, "# " + APPLY),
    "the tuning applied only under a condition": PROLOGUE + TUNING.replace(APPLY, "[[ -n ${TUNE:-} ]] && " + APPLY),
    # a command run inside an argument or an assignment before the lock
    "a command inside an allowed mkdir": PROLOGUE.replace('mkdir -p "${RUN_DIR}"',
                                                          'mkdir -p "$(touch /x; echo /run/a)"') + TUNING,
    "a command inside a prologue assignment": PROLOGUE.replace('RUN_DIR="/run/pilot-fleet"',
                                                               'RUN_DIR="/run/$(id -u)"') + TUNING,
    # the once-per-boot exit under a condition of its own
    "the exit nested under a condition": PROLOGUE.replace("  exit 0\n", "  if [[ -n ${X:-} ]]; then exit 0; fi\n")
    + TUNING,
    # the lock released on the boot path
    "the lock closed after the marker check": PROLOGUE + "exec 9>&-\n" + TUNING,
    "the lock unlocked in a function the boot path calls": PROLOGUE + "unlock() {\n  flock -u 9\n}\nunlock\n" + TUNING,
}
# the form of one, not a key: its body is not a valid key
PEM_KEY = "-----BEGIN EC PRIVATE KEY-----\nbm90IGEga2V5LCBvbmx5IGl0cyBmb3Jt\n-----END EC PRIVATE KEY-----"
TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
MIG = "gcp:compute/instanceGroupManager:InstanceGroupManager"
ITEM = "gcp:compute/projectMetadataItem:ProjectMetadataItem"

SPOT = {"provisioningModel": "SPOT", "preemptible": True, "automaticRestart": False, "onHostMaintenance": "TERMINATE",
        "instanceTerminationAction": "STOP"}
CASES: dict[str, tuple[Callable[[Resources], None], set[tuple[str, str]]]] = {
    "instance startup-script key": (metadata("swarm-1", startup_script="echo ghost"),
                                    {("no-instance-startup-scripts", "swarm-1")}),
    "instance metadataStartupScript": (set_input("swarm-2", ":Instance", "metadataStartupScript", "echo x"),
                                       {("no-instance-startup-scripts", "swarm-2")}),
    "user-data": (metadata("swarm-3", user_data="#cloud-config"), {("no-instance-startup-scripts", "swarm-3")}),
    "shutdown-script-url": (metadata("pilot-rendezvous", shutdown_script_url="gs://b/s.sh"),
                            {("no-instance-startup-scripts", "pilot-rendezvous")}),
    "windows script": (metadata("swarm-1", windows_startup_script_ps1="x"),
                       {("no-instance-startup-scripts", "swarm-1")}),
    # a swarm template is a pool's: health checkers must reach it too (pools-heal-safely), as tests/test_scale.py
    # shows from a compliant pool
    "template startup-script-url": (template_of("swarm-1", "tmpl", startup_script_url="gs://b/x"),
                                    {("no-instance-startup-scripts", "tmpl"), ("pools-heal-safely", "tmpl")}),
    "MIG all-instances user-data": (add(MIG, "mig", {"allInstancesConfig": {"metadata": {"user-data": "x"}},
                                                     "targetSize": 2, "updatePolicy": {"maxUnavailableFixed": 0},
                                                     "autoHealingPolicies": {"healthCheck": "hc",
                                                                             "initialDelaySec": 1800}}),
                                    {("no-instance-startup-scripts", "mig")}),
    "ProjectMetadata resource": (add("gcp:compute/projectMetadata:ProjectMetadata", "all-keys",
                                     {"metadata": {"enable-oslogin": "TRUE"}}),
                                 {("one-project-startup-script", "all-keys")}),
    "second project startup-script": (add(ITEM, "startup-script-2", {"key": "startup-script", "value": "x"}),
                                      {("one-project-startup-script", "startup-script-2"),
                                       ("startup-script-guarded", "startup-script-2")}),
    # what finally runs on a VM is not only the project's startup-script
    "project startup-script-url": (add(ITEM, "extra-url", {"key": "startup-script-url", "value": "gs://b/x.sh"}),
                                   {("one-project-startup-script", "extra-url")}),
    "project shutdown-script": (add(ITEM, "on-stop", {"key": "shutdown-script", "value": "pkill pilot"}),
                                {("one-project-startup-script", "on-stop")}),
    "zonal startup-script": (add("gcp:compute/instanceSettings:InstanceSettings", "zone-a",
                                 {"zone": "us-central1-a", "metadata": {"items": {"startup-script": "echo x"}}}),
                             {("one-project-startup-script", "zone-a")}),
    "zonal harmless key": (add("gcp:compute/instanceSettings:InstanceSettings", "zone-a",
                               {"zone": "us-central1-a", "metadata": {"items": {"enable-oslogin": "TRUE"}}}), set()),
    "no project startup-script": (remove("startup-script", ":ProjectMetadataItem"),
                                  {("one-project-startup-script", "stack")}),
    "a working prologue": (set_input("startup-script", ":ProjectMetadataItem", "value", PROLOGUE + TUNING), set()),
    "guards after an unconditional exit": (set_input("startup-script", ":ProjectMetadataItem", "value",
                                                     GUARDS_AFTER_EXIT),
                                           {("startup-script-guarded", "startup-script")}),
    "guards inside a heredoc": (set_input("startup-script", ":ProjectMetadataItem", "value", GUARDS_IN_HEREDOC),
                                {("startup-script-guarded", "startup-script")}),
    "guards only in comments": (set_input("startup-script", ":ProjectMetadataItem", "value", COMMENTED_ONLY),
                                {("startup-script-guarded", "startup-script")}),
    **{trick: (set_input("startup-script", ":ProjectMetadataItem", "value", script),
               {("startup-script-guarded", "startup-script")}) for trick, script in GUARD_TRICKS.items()},
    "the lock released only in a function nothing calls": (set_input(
        "startup-script", ":ProjectMetadataItem", "value", PROLOGUE + "unlock() {\n  flock -u 9\n}\n" + TUNING), set()),
    # private keys never in metadata or a startup script (key_material.py); a Secret Manager name is a reference
    "a PEM key in instance metadata": (metadata("swarm-1", tls_key=PEM_KEY), {("no-private-keys", "swarm-1")}),
    "a service-account key file in project metadata": (
        add(ITEM, "sa-key", {"key": "sa", "value": '{"type": "service_account", "private_key": "' + PEM_KEY + '"}'}),
        {("no-private-keys", "sa-key")}),
    "a value under a secret's name": (metadata("swarm-2", db_password="hunter2"), {("no-private-keys", "swarm-2")}),
    "a Secret Manager name is not the key": (
        metadata("swarm-2", registry_tls_key_secret="projects/p-1/secrets/registry-key/versions/latest"), set()),
    "a PEM key written by the startup script": (set_input(
        "startup-script", ":ProjectMetadataItem", "value", PROLOGUE + TUNING + "cat >/etc/k.pem <<K\n" + PEM_KEY
        + "\nK\n"), {("no-private-keys", "startup-script")}),
    # agents that register with a public registry address over plaintext: an advisory
    "a public registry over plaintext": (metadata("swarm-3", pilot_registry="203.0.113.5:9000",
                                                  pilot_registry_fingerprint=None),
                                         {("registry-not-plaintext-over-internet", "swarm-3")}),
    "a public registry over pinned TLS": (metadata("swarm-3", pilot_registry="203.0.113.5:9000"), set()),
    "swarm over memory budget": (metadata("swarm-3", pilot_target_agents="2000"),
                                 {("agents-fit-memory", "swarm-3"), ("pilot-ports-open", "swarm-3")}),
    # for the one release both names are written, an old supervisor reads the old one: it counts too
    "old target name over memory budget": (metadata("swarm-3", pilot_agent_target="2000"),
                                           {("agents-fit-memory", "swarm-3"), ("pilot-ports-open", "swarm-3")}),
    # values as the VM reads them: "swarm\n" boots a swarm host, so every swarm rule judges it as one
    "role with a trailing newline over budget": (metadata("swarm-3", pilot_role="swarm\n", pilot_target_agents="2000"),
                                                 {("agents-fit-memory", "swarm-3"), ("pilot-ports-open", "swarm-3")}),
    # every VM kind counts: an instance from a machine image is a swarm VM like any other
    "machine-image VM over budget": (like("swarm-3", "gcp:compute/instanceFromMachineImage:InstanceFromMachineImage",
                                          "from-image", pilot_target_agents="2000"),
                                     {("agents-fit-memory", "from-image"), ("pilot-ports-open", "from-image")}),
    "custom machine type too small": (set_input("swarm-3", ":Instance", "machineType", "e2-custom-8-16384"),
                                      {("agents-fit-memory", "swarm-3")}),
    # the ports come from the VM's own metadata: a rendezvous moved off the port its firewall opens is caught
    "rendezvous moved to another registry port": (metadata("pilot-rendezvous", pilot_registry_port="9100"),
                                                  {("pilot-ports-open", "pilot-rendezvous")}),
    "rendezvous port with whitespace": (metadata("pilot-rendezvous", pilot_beacon_port=" 9001\n"), set()),
    # firewall semantics as Compute Engine applies them
    "deny of the registry port at a better priority": (
        add("gcp:compute/firewall:Firewall", "deny-registry",
            {"network": "projects/pilot-fleet-prod/global/networks/pilot-fleet", "direction": "INGRESS",
             "priority": 100, "denies": [{"protocol": "tcp", "ports": ["9000"]}], "sourceRanges": ["0.0.0.0/0"],
             "targetTags": ["pilot-rendezvous"]}),
        {("pilot-ports-open", "pilot-rendezvous")}),
    "deny of the registry port at a worse priority": (
        add("gcp:compute/firewall:Firewall", "deny-registry",
            {"network": "projects/pilot-fleet-prod/global/networks/pilot-fleet", "direction": "INGRESS",
             "priority": 2000, "denies": [{"protocol": "tcp", "ports": ["9000"]}], "sourceRanges": ["0.0.0.0/0"],
             "targetTags": ["pilot-rendezvous"]}),
        set()),
    "registry rule in another network": (set_input("pilot-rendezvous-allow-registry", ":Firewall", "network",
                                                   "projects/pilot-fleet-prod/global/networks/other"),
                                         {("pilot-ports-open", "pilot-rendezvous")}),
    "registry rule by the VM's service account": (by_service_account("pilot-rendezvous-allow-registry",
                                                                     "pilot-rendezvous"), set()),
    "registry rule by another service account": (by_service_account("pilot-rendezvous-allow-registry",
                                                                    "swarm-1"),
                                                 {("pilot-ports-open", "pilot-rendezvous")}),
    "registry rule admitting only tagged VMs": (source_tags_only("pilot-rendezvous-allow-registry"),
                                                {("pilot-ports-open", "pilot-rendezvous")}),
    "registry rule missing": (remove("pilot-rendezvous-allow-registry", ":Firewall"),
                              {("pilot-ports-open", "pilot-rendezvous")}),
    "beacon rule disabled": (set_input("pilot-rendezvous-allow-beacon", ":Firewall", "disabled", True),
                             {("pilot-ports-open", "pilot-rendezvous")}),
    "agent range too narrow": (set_input("swarm-1-allow-agents", ":Firewall", "allows",
                                         [{"protocol": "udp", "ports": ["10000-11999"]}]),
                               {("pilot-ports-open", "swarm-1")}),
    "agent rule for another host": (set_input("swarm-2-allow-agents", ":Firewall", "targetTags", ["other"]),
                                    {("pilot-ports-open", "swarm-2")}),
    "dashboard to the world": (set_input("pilot-rendezvous-allow-dashboard", ":Firewall", "sourceRanges",
                                         ["0.0.0.0/0"]),
                               {("dashboard-not-public", "pilot-rendezvous-allow-dashboard")}),
    # numbers for ports, as the SDK allows (the wire format makes them floats): judged, not a crash
    "registry port as a number": (set_input("pilot-rendezvous-allow-registry", ":Firewall", "allows",
                                            [{"protocol": "tcp", "ports": [9000]}]), set()),
    "registry rule on another number": (set_input("pilot-rendezvous-allow-registry", ":Firewall", "allows",
                                                  [{"protocol": "tcp", "ports": [9999]}]),
                                        {("pilot-ports-open", "pilot-rendezvous")}),
    # no source at all is 0.0.0.0/0 on Compute Engine
    "ssh from no source": (set_input("pilot-fleet-allow-ssh", ":Firewall", "sourceRanges", []),
                           {("no-public-ssh-rdp", "pilot-fleet-allow-ssh")}),
    "ssh to the world": (set_input("pilot-fleet-allow-ssh", ":Firewall", "sourceRanges", ["0.0.0.0/0"]),
                         {("no-public-ssh-rdp", "pilot-fleet-allow-ssh")}),
    # a disabled rule admits nothing (as pilot-ports-open reads it too)
    "ssh to the world, disabled": (both(set_input("pilot-fleet-allow-ssh", ":Firewall", "sourceRanges", ["0.0.0.0/0"]),
                                        set_input("pilot-fleet-allow-ssh", ":Firewall", "disabled", True)), set()),
    "shielded vm off": (set_input("swarm-1", ":Instance", "shieldedInstanceConfig", {"enableSecureBoot": False}),
                        {("shielded-vm", "swarm-1")}),
    "default service account": (set_input("swarm-2", ":Instance", "serviceAccount",
                                          {"email": "123-compute@developer.gserviceaccount.com",
                                           "scopes": ["https://www.googleapis.com/auth/logging.write"]}),
                                {("no-default-service-account", "swarm-2")}),
    "cloud-platform scope": (set_input("swarm-2", ":Instance", "serviceAccount",
                                       {"email": "pilot-swarm-vm@p.iam.gserviceaccount.com",
                                        "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}),
                             {("no-cloud-platform-scope", "swarm-2")}),
    # the rendezvous reads the registry's key from Secret Manager, which takes cloud-platform alone: with its own
    # account (the plan's) that passes; with the default compute account it does not
    "cloud-platform scope to read the registry key, default account": (
        set_input("pilot-rendezvous", ":Instance", "serviceAccount",
                  {"email": "123-compute@developer.gserviceaccount.com",
                   "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}),
        {("no-cloud-platform-scope", "pilot-rendezvous"), ("no-default-service-account", "pilot-rendezvous")}),
    "project ssh keys allowed": (metadata("swarm-1", block_project_ssh_keys="FALSE"),
                                 {("block-project-ssh-keys", "swarm-1")}),
    "no os login": (metadata("swarm-1", enable_oslogin=None), {("os-login", "swarm-1")}),
    # Spot: a spot swarm VM keeps its identities on a disk that outlives it; a fleet keeps an on-demand floor
    "a spot host with its state disk": (set_input("swarm-1", ":Instance", "scheduling", SPOT), set()),
    "a spot host with its identities on the boot disk": (
        both(set_input("swarm-1", ":Instance", "scheduling", SPOT), metadata("swarm-1", pilot_state_device=None)),
        {("spot-keeps-identities", "swarm-1")}),
    "a legacy preemptible host with its identities on the boot disk": (
        both(set_input("swarm-2", ":Instance", "scheduling", {"preemptible": True}),
             metadata("swarm-2", pilot_state_device="not-attached")), {("spot-keeps-identities", "swarm-2")}),
    "every swarm VM spot": (both(*(set_input(f"swarm-{i}", ":Instance", "scheduling", SPOT) for i in (1, 2, 3))),
                            {("spot-has-on-demand-floor", "stack")}),
    "serial port on": (metadata("swarm-1", serial_port_enable="TRUE"), {("serial-port-off", "swarm-1")}),
}


def test_baseline_prod_plan_is_compliant(stub, baseline) -> None:
    assert directly(baseline) == set()
    assert over_grpc(stub, baseline) == set()


@pytest.mark.parametrize("case", list(CASES))
def test_one_change_one_violation(stub, baseline, case: str) -> None:
    change, expected = CASES[case]
    resources = [dict(r, inputs=copy.deepcopy(r["inputs"])) for r in baseline]
    change(resources)
    assert directly(resources) == expected
    assert over_grpc(stub, resources) == expected


def test_policy_config_changes_the_budget(stub, baseline) -> None:
    # with the 13.4 MB measured for pilot-daemon 1.18.0 and the seed's 60% headroom, two seed hosts no longer fit
    overrides = {"agents-fit-memory": {"agentMemoryMb": 13.4}}
    assert over_grpc(stub, baseline, overrides) == {("agents-fit-memory", "swarm-1"), ("agents-fit-memory", "swarm-3")}


def test_unknown_values_degrade_only_the_checks_that_need_them(stub, baseline) -> None:
    """swarm-1's whole metadata and swarm-2's machine type are not known at preview, and swarm-3 is given more
    agents than its memory holds. swarm-3 is still rejected; swarm-1 and swarm-2 are not judged by the rules that
    need those values, and `preview-unknowns` names each VM, rule and value; nothing is a stack-wide "can't run"."""
    resources = [dict(r, inputs=copy.deepcopy(r["inputs"])) for r in baseline]
    inputs(resources, "swarm-1", ":Instance")["metadata"] = UNKNOWN
    inputs(resources, "swarm-2", ":Instance")["machineType"] = UNKNOWN
    metadata("swarm-3", pilot_target_agents="9000")(resources)
    report = analyze_with(stub, plan_of(resources), PACK_DIR, "test", {})
    found = [v for v in report.violations if v.policy not in BASELINE_ADVISORIES]
    # swarm-3's memory, and its agent ports now past what its firewall rule opens
    assert {(v.policy, v.urn.rsplit("::", 1)[-1]) for v in found if v.enforcement == "mandatory"} == {
        ("agents-fit-memory", "swarm-3"), ("pilot-ports-open", "swarm-3")}
    assert not [v for v in found if not v.urn], found  # no stack-wide "can't run policy"
    unknowns = {(v.urn.rsplit("::", 1)[-1], v.message.split(": ")[1].split(" did not")[0], v.message.split(
        "at preview: ")[1].split(" not known")[0]) for v in found if v.policy == "preview-unknowns"}
    assert {("swarm-1", "agents-fit-memory", "metadata"), ("swarm-1", "pilot-ports-open", "metadata"),
            ("swarm-2", "agents-fit-memory", "machineType")} <= unknowns, unknowns
    assert {name for name, _, _ in unknowns} == {"swarm-1", "swarm-2"}
    # per-resource rules that read the unknown value: the engine's own advisory for that resource and value only
    cant = [v for v in found if "can't run policy" in v.message]
    assert cant and all(v.urn.endswith("::swarm-1") and ".metadata" in v.message and v.enforcement == "advisory"
                        for v in cant), cant
