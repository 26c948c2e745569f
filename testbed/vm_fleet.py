"""A whole fleet offline: every planned VM of a stack as a Debian 12 system container under real systemd.

Each host (vm_host.py) boots an overlay of one cached base image (vm_image.py: an mmdebstrap root file system
with google-guest-agent, in .cache/vm) as its boot disk, with `systemd-nspawn --boot` (systemd as PID 1), in a
network namespace of its own: its eth0 holds the VM's planned external IP on a bridge the hosts share, its loopback
holds 169.254.169.254 with a metadata stand-in serving the VM's planned metadata and the project's
`startup-script`. The image's own google-startup-scripts.service runs the script, as on Compute Engine. Killing a
host's PID 1 is a power loss; booting the same overlay again is the VM coming back on its disk.

Stand-ins, each because the real part cannot run in a container on a test machine:
  - `sysctl`: /proc/sys is read-only inside a container; /usr/local/sbin/sysctl in the image keeps the values the
    script applies in a file and reads them back from there.
  - TasksMax: where the pids cgroup controller is not delegated (cgroup v1 test machines) systemd records it on the
    unit but the kernel does not enforce it.
  - the rendezvous' store disk: an ext4 image file on a loop device, handed to the container at the store disk's
    device path (/dev/disk/by-id/google-pilot-store), so the startup script formats and mounts it as on Compute
    Engine, with its own mount options (`dirsync`); it outlives the host's boot disk as the persistent disk does.
  - a swarm VM's agent state disk: a directory bind-mounted at its mount point.
  - Compute Engine's VPC: every host's eth0 holds its planned internal address too, in the planned subnet, on the
    same bridge; a VM planned with an alias IP range ("/N") is given one, aligned, from the top half of the subnet,
    as Compute Engine allocates it, served at network-interfaces/0/ip-aliases/0, and made local on its eth0 as
    google-guest-agent does on a VM (a `local` route in the local table), so peers on the bridge reach it.
  - the internet: PyPI and GitHub are served by each host's metadata stand-in under /mirror (the script's
    PILOT_DOWNLOAD_MIRROR seam, set by a drop-in on google-startup-scripts.service in the image), from files on
    this machine: the pinned wheels in .cache/wheels and the pinned source in .cache/sources.

Root only. Nothing here touches this machine's own kernel settings, services or network: all addresses live in
network namespaces created here and removed on close.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fleet.facts import pilot
from fleet.plan.mock_engine import MOCK_EXTERNAL_NET
from fleet.vm_contract import MetadataKey
from testbed.secret_manager import planned_secrets
from testbed.vm_host import Host, downloads
from testbed.vm_image import METADATA_IP, REPO, TestBedError, ensure_image

# The plan's key under which plan_stack keeps the secret versions the bed's Secret Manager serves.
BED_SECRETS = "bedSecrets"
# What the public rendezvous logs for each registration its rate limit refuses (pkg/registry/server.go).
REFUSED = "registration rate limited"


def run_ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def plan_stack(stack: str, target: int, workdir: Path, rendezvous: dict[str, Any] | None = None,
               hosts: dict[str, Any] | None = None) -> dict[str, Any]:
    """`fleet plan --json` of a shipped stack as it is, but for each swarm host's target set to `target` (and the
    rendezvous settings in `rendezvous` changed, e.g. its activeZone; each host's settings in `hosts`)."""
    config = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]
    for host in config.get(f"{pilot.PROJECT_NAME}:swarmHosts", []):
        host["targetAgents"] = target
        host.update(hosts or {})
    config[f"{pilot.PROJECT_NAME}:rendezvous"].update(rendezvous or {})
    for name in ("Pulumi.yaml", "__main__.py", "fleet", "startup", "policies"):
        (workdir / name).symlink_to(REPO / name)
    (workdir / "Pulumi.bed.yaml").write_text(yaml.safe_dump({"config": config}))
    out = workdir / "plan.json"
    result = subprocess.run([sys.executable, "-m", "fleet", "plan", "--program", str(workdir), "--stack", "bed",
                             "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    if result.returncode != 0:
        raise TestBedError(f"planning {stack} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    plan = dict(json.loads(out.read_text()))
    # what the bed's Secret Manager holds: the plan's text has [secret] in their place
    plan[BED_SECRETS] = planned_secrets(workdir, "bed")
    return plan


def service_account(vm: dict[str, Any]) -> str:
    """The e-mail of a planned VM's service account."""
    return str((vm["inputs"].get("serviceAccount") or {}).get("email") or "")


@dataclass
class Fleet:
    """The hosts of one plan on one bridge; `http()` reads a URL from the bridge's side, as an operator would."""

    hosts: list[Host]
    bridge_namespace: str
    base: Path
    plan: dict[str, Any]
    tag: str = "pf"
    plugged: int = 0

    def plug(self, host: Host) -> None:
        """Give `host` its own network namespace with its address on the shared bridge and the metadata stand-in
        at 169.254.169.254, and add it to the fleet (not yet booted)."""
        i = self.plugged
        self.plugged += 1
        host.namespace = f"{self.tag}-{i}"
        run_ip("netns", "add", host.namespace)
        run_ip("-n", host.namespace, "link", "set", "lo", "up")
        run_ip("-n", host.namespace, "addr", "add", f"{METADATA_IP}/32", "dev", "lo")
        run_ip("link", "add", f"{self.tag}h{i}", "netns", host.namespace, "type", "veth", "peer", "name", f"port{i}",
            "netns", self.bridge_namespace)
        run_ip("-n", host.namespace, "link", "set", f"{self.tag}h{i}", "name", "eth0")
        run_ip("-n", host.namespace, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        if host.internal_ip:
            prefix = host.subnet.split("/")[1]
            run_ip("-n", host.namespace, "addr", "add", f"{host.internal_ip}/{prefix}", "dev", "eth0")
        if host.aliases:  # what google-guest-agent does with a VM's alias IP ranges
            run_ip("-n", host.namespace, "route", "add", "local", host.aliases, "dev", "eth0", "table", "local")
        run_ip("-n", host.namespace, "link", "set", "eth0", "up")
        run_ip("-n", self.bridge_namespace, "link", "set", f"port{i}", "master", "br0")
        run_ip("-n", self.bridge_namespace, "link", "set", f"port{i}", "up")
        self.hosts.append(host)
        host.start_metadata()

    def fail_over_rendezvous(self, after: dict[str, Any]) -> Host:
        """What `pulumi up` carries out once `rendezvous.activeZone` names the other zone (`after` is that plan):
        the old VM is deleted (here: it stays powered off, and its network namespace goes, which releases its
        address), and the same VM is created in the other zone on a fresh boot disk, with the same reserved
        address and the same regional store disk attached. Returns the new host (not yet booted)."""
        old = self.rendezvous
        old.close()
        subprocess.run(["ip", "netns", "del", old.namespace], check=False, capture_output=True)
        self.hosts.remove(old)
        vm = next(r for r in after["resources"] if r["type"] == "gcp:compute/instance:Instance"
                  and r["inputs"]["metadata"].get(MetadataKey.ROLE) == pilot.ROLE_RENDEZVOUS)
        new = Host(vm["name"], after["outputs"]["rendezvousIp"],
                   {k: str(v) for k, v in vm["inputs"]["metadata"].items()},
                   project_script(after),
                   self.base / f"{vm['name']}-{vm['inputs']['zone']}", "", old.image, old.files, store=old.store,
                   internal_ip=planned_internal_ip(after, vm["name"]), subnet=old.subnet,
                   service_account=service_account(vm), secrets=after.get(BED_SECRETS, {}))
        new.base.mkdir(parents=True, exist_ok=True)
        self.plug(new)
        return new

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    @property
    def rendezvous(self) -> Host:
        return next(h for h in self.hosts if h.role == pilot.ROLE_RENDEZVOUS)

    @property
    def swarm(self) -> list[Host]:
        return [h for h in self.hosts if h.role == pilot.ROLE_SWARM]

    def refusals(self) -> int:
        """Registrations the rendezvous refused so far (its journal, this boot)."""
        return self.rendezvous.journal("pilot-rendezvous.service").count(REFUSED)

    def in_bridge(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.bridge_namespace, *argv], capture_output=True, text=True,
                              timeout=timeout, check=False, cwd=REPO)

    def registry_connections(self) -> int:
        """Established TCP connections to the registry's port on the rendezvous VM: every running agent holds one
        (docs/pilot-facts.md), so this counts the agents connected to this rendezvous now. (The registry's
        `active_nodes` cannot: it counts every node heard from in the last 3 minutes, and a restored store brings
        that time with it.)"""
        shown = self.rendezvous.run("ss", "-Htn", "state", "established", f"( sport = :{pilot.REGISTRY_PORT} )")
        return len(shown.stdout.splitlines())

    def stats(self) -> dict[str, Any] | None:
        """The rendezvous' /api/stats, or None while it does not answer."""
        result = self.in_bridge("curl", "-fsS", "--max-time", "3", self.plan["outputs"]["statsUrl"], timeout=10)
        if result.returncode != 0:
            return None
        with suppress(ValueError):
            return dict(json.loads(result.stdout))
        return None

    def boot_all(self) -> float:
        """Power on every host at once; returns the moment (time.monotonic)."""
        started = time.monotonic()
        for host in self.hosts:
            host.boot()
        return started

    @contextmanager
    def sampling(self, every: float = 0.05) -> Iterator[dict[str, int]]:
        """Samples each host's agent count in the background; yields the most seen at once per host."""
        most: dict[str, int] = {h.name: 0 for h in self.swarm}
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                for host in self.swarm:
                    most[host.name] = max(most[host.name], len(host.agent_pids()))
                done.wait(every)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield most
        finally:
            done.set()
            thread.join(timeout=10)

    def close(self) -> None:
        for host in self.hosts:
            with suppress(Exception):
                host.close()
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", host.namespace], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", self.bridge_namespace], check=False, capture_output=True)


def journal(host: Host, unit: str, since: float) -> Iterator[tuple[float, str]]:
    """(when, message) of UNIT's journal entries on HOST since SINCE (epoch seconds). journalctl takes whole seconds:
    it is asked from the second SINCE falls in (rounding to the nearest one dropped the first round of a scale-up half
    the time, and a cold start measured a round short), and the entries before SINCE are left out here."""
    out = host.run("journalctl", "--no-pager", "-o", "json", "-u", unit, f"--since=@{math.floor(since)}").stdout
    for line in out.splitlines():
        entry = json.loads(line)
        message, when = entry.get("MESSAGE"), int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        if isinstance(message, str) and when >= since:
            yield when, message


def supervisor_events(host: Host, event: str, since: float) -> list[dict[str, Any]]:
    """The supervisor's journal events named EVENT on HOST since SINCE (epoch seconds), each with its time as
    "when"."""
    return [{**json.loads(message), "when": when} for when, message in journal(host, "pilot-agents.service", since)
            if f'"event": "{event}"' in message]


def registrations(fleet: Fleet, since: float) -> list[tuple[float, str, str]]:
    """(when, mode, listen address) of every registration the fleet's rendezvous logged since SINCE (epoch
    seconds)."""
    found = []
    for when, message in journal(fleet.rendezvous, "pilot-rendezvous.service", since):
        if '"registered node"' in message:
            fields = json.loads(message)
            found.append((when, fields["mode"], fields["listen"]))
    return found


def wait_for(what: Callable[[], bool], timeout: float, message: str, poll: float = 0.2) -> float:
    """Wait until `what()` holds; returns when (time.monotonic). Fails with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s: {message}")
        time.sleep(poll)
    return time.monotonic()


class AliasAllocator:
    """Alias IP ranges as Compute Engine allocates a "/N" netmask: an aligned block of the subnet, here from its top
    half (the planned VMs' own addresses are in its first block)."""

    def __init__(self, subnet: str) -> None:
        net = ipaddress.IPv4Network(subnet)
        self.next = int(net.network_address) + net.num_addresses // 2
        self.end = int(net.broadcast_address)

    def take(self, inputs: dict[str, Any]) -> str:
        nics = inputs.get("networkInterfaces") or [{}]
        ranges = nics[0].get("aliasIpRanges") or []
        if not ranges:
            return ""
        size = 2 ** (32 - int(str(ranges[0]["ipCidrRange"]).lstrip("/")))
        start = -(-self.next // size) * size
        if start + size - 1 > self.end:
            raise TestBedError("the planned subnet has no room for another alias IP range")
        self.next = start + size
        return f"{ipaddress.IPv4Address(start)}/{32 - (size.bit_length() - 1)}"


def planned_internal_ip(plan: dict[str, Any], name: str) -> str:
    return str(next(h for h in plan["outputs"]["hosts"] if h["name"] == name).get("internalIp") or "")


def project_script(plan: dict[str, Any]) -> str:
    """The project's `startup-script` metadata item, as planned."""
    item = next(r for r in plan["resources"] if r["type"] == "gcp:compute/projectMetadataItem:ProjectMetadataItem"
                and r["inputs"]["key"] == MetadataKey.STARTUP_SCRIPT)
    return str(item["inputs"]["value"])


@contextmanager
def fleet_of(plan: dict[str, Any], base: Path) -> Iterator[Fleet]:
    """Every VM of `plan` (the JSON of `fleet plan --json`) as a container, networked, not yet booted."""
    if os.geteuid() != 0:
        raise TestBedError("the whole-fleet test bed needs root (network namespaces, mounts, systemd-nspawn)")
    image = ensure_image()
    script = project_script(plan)
    vms = [r for r in plan["resources"] if r["type"] == "gcp:compute/instance:Instance"]
    hosts_out = {h["name"]: h for h in plan["outputs"]["hosts"]}
    subnet = next(r["inputs"]["ipCidrRange"] for r in plan["resources"]
                  if r["type"] == "gcp:compute/subnetwork:Subnetwork")
    aliases = AliasAllocator(subnet)
    tag = f"pf{os.getpid() % 100000}"
    fleet = Fleet([], f"{tag}-br", base, plan, tag)
    files = downloads()
    try:
        run_ip("netns", "add", fleet.bridge_namespace)
        run_ip("-n", fleet.bridge_namespace, "link", "set", "lo", "up")
        run_ip("-n", fleet.bridge_namespace, "link", "add", "br0", "type", "bridge")
        run_ip("-n", fleet.bridge_namespace, "addr", "add", f"{MOCK_EXTERNAL_NET}.254/24", "dev", "br0")
        run_ip("-n", fleet.bridge_namespace, "link", "set", "br0", "up")
        for vm in vms:
            host = Host(vm["name"], hosts_out[vm["name"]]["externalIp"],
                        {k: str(v) for k, v in vm["inputs"]["metadata"].items()}, script, base / vm["name"], "",
                        image, files, internal_ip=str(hosts_out[vm["name"]].get("internalIp") or ""), subnet=subnet,
                        aliases=aliases.take(vm["inputs"]), service_account=service_account(vm),
                        secrets=plan.get(BED_SECRETS, {}))
            host.base.mkdir(parents=True, exist_ok=True)
            if host.role == pilot.ROLE_RENDEZVOUS:
                host.store = host.base / "store-disk.img"
                with open(host.store, "wb") as disk:  # sparse: an empty disk, formatted by the startup script
                    disk.truncate(512 << 20)
            elif host.attributes.get(MetadataKey.STATE_DEVICE):
                host.state = host.base / "state-disk"
                host.state.mkdir(exist_ok=True)
            fleet.plug(host)
        yield fleet
    finally:
        fleet.close()
