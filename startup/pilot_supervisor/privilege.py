"""Who the agents are and where they live: their own system user, which the supervisor drops to when it starts one,
and their own cgroup under the supervisor's delegated unit, which alone decides what counts as an agent.

A process counts as an agent only if it is in the agents' cgroup (and started with an agent's `-socket`). Only root
can move a process into that cgroup, so no other user's process is ever counted, whatever its command line says.
A supervisor restarted by systemd finds the same cgroup under its unit. Where the supervisor does not run as a
systemd service with a delegated cgroup (the tests' plain supervisors), agents are the processes of the agents'
user (the supervisor's own user when it has none) started with an agent's `-socket`."""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

# the agents' cgroup, a child of the supervisor's own (its unit's, delegated by `Delegate=yes`)
AGENTS_CGROUP = "agents"
# files of an agent's directory the supervisor itself writes (root's); everything else is the agent's own
SUPERVISOR_FILES = ("daemon.log", "registered")


def address_user(base: str, address: int) -> str:
    """The user of the agents that register from registration address ADDRESS (its position): the agents' user
    for the first, `<user>-<position>` for the others, in the agents' group. Policy routing keys on it (sources.py);
    "" where agents have no user of their own."""
    return base if not base or address == 0 else f"{base}-{address}"


class PrivilegeError(Exception):
    """The agents' user is missing: agents are not started as root instead."""


@dataclass(frozen=True)
class AgentUser:
    name: str
    uid: int
    gid: int

    @classmethod
    def resolve(cls, name: str) -> AgentUser | None:
        """The agents' user, when there is one and this supervisor runs as root (it can drop to it)."""
        if not name or os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise PrivilegeError(f"the agents' user {name} does not exist (the startup script creates it): "
                                 "no agent is started as root instead") from None
        return cls(name, entry.pw_uid, entry.pw_gid)

    def _group_owns(self, directory: Path, mode: int) -> None:
        """DIRECTORY is root's and the agents' group's, with MODE (changed only where it differs)."""
        info = directory.stat()
        if (info.st_uid, info.st_gid) != (0, self.gid):
            os.chown(directory, 0, self.gid)
        if stat.S_IMODE(info.st_mode) != mode:
            directory.chmod(mode)

    def enter(self, directory: Path) -> None:
        """DIRECTORY (the parent of the agents' own directories): the agents' group may pass it (0750)."""
        self._group_owns(directory, 0o750)

    def share(self, directory: Path, files: bool = True) -> None:
        """DIRECTORY is root's and the agents' group's (0770): the agent writes its identity and socket there, the
        supervisor its log and markers, nobody else anything. Files an earlier release left as root's (an agent's
        identity) become the agent's, so it keeps its identity."""
        self._group_owns(directory, 0o770)
        for entry in os.scandir(directory) if files else ():
            if entry.name not in SUPERVISOR_FILES and entry.is_file(follow_symlinks=False) and \
                    entry.stat(follow_symlinks=False).st_uid != self.uid:
                os.chown(entry.path, self.uid, self.gid, follow_symlinks=False)


def _mounts() -> list[tuple[str, str, str, str]]:
    """(mount root, mount point, fs type, super options) of every mount this process sees."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        parts, rest = fields.split(), tail.split()
        if len(parts) >= 5 and len(rest) >= 3:
            found.append((parts[3], parts[4], rest[0], rest[2]))
    return found


class AgentCgroup:
    """The agents' cgroup, in every hierarchy systemd tracks the unit in (cgroup v2; on a hybrid host also the
    name=systemd v1 hierarchy). The first directory is the one read."""

    def __init__(self, directories: list[Path]) -> None:
        self.directories = directories

    @classmethod
    def discover(cls) -> AgentCgroup | None:
        """The `agents` child of this process' unit cgroup, made if missing; None unless this runs as a systemd
        service (INVOCATION_ID) whose cgroup it may write (Delegate=yes)."""
        if not os.environ.get("INVOCATION_ID"):
            return None
        wanted: list[tuple[str, str]] = []  # (fs type, cgroup path), the v2 hierarchy first
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            path = path.removesuffix("/.control")  # a delegated unit's ExecStopPost runs in its `.control` child
            if not path.endswith(".service"):
                continue
            if hierarchy == "0" and not controllers:
                wanted.insert(0, ("cgroup2", path))
            elif controllers == "name=systemd":
                wanted.append(("cgroup", path))
        directories = []
        for fstype, path in wanted:
            for root, point, kind, options in _mounts():
                if kind == fstype and (fstype == "cgroup2" or "name=systemd" in options.split(",")) and \
                        (path + "/").startswith(root.rstrip("/") + "/"):
                    directory = Path(point) / path[len(root.rstrip("/")):].lstrip("/") / AGENTS_CGROUP
                    try:
                        directory.mkdir(exist_ok=True)
                    except OSError:
                        continue  # not delegated to us
                    directories.append(directory)
                    break
        return cls(directories) if directories else None

    def pids(self) -> list[int]:
        try:
            text = (self.directories[0] / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(word) for word in text.split() if word.isdigit() and word != "0"]

    def adopt(self, pid: int) -> None:
        """Move PID (just started) into the agents' cgroup, in every hierarchy."""
        for directory in self.directories:
            try:
                (directory / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:
                return  # it exited already
