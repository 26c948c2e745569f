"""A sandboxed VM for the startup script: a metadata server on loopback, stub sysctl/systemctl, a private root.

Nothing here touches this machine's kernel settings or services: `sysctl` and `systemctl` are stubs on PATH
that record what they were asked into files under the sandbox.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fleet.facts import pilot
from fleet.facts.pilot_releases import Wheel, wheels
from fleet.startup_render import render_startup_script
from testbed.rendezvous_source import archive_path
from testbed.supervisor_harness import STANDIN

REPO = Path(__file__).resolve().parent.parent
WHEEL_CACHE = REPO / ".cache" / "wheels"
# The public rendezvous source at the pinned commit, fetched and checked by testbed/rendezvous_source.py
SOURCE_FIXTURE = archive_path()
# Downloads are served under this path: https://HOST/PATH as <server>/mirror/HOST/PATH (PILOT_DOWNLOAD_MIRROR).
MIRROR_PATH = "/mirror"


def mirror_path(url: str) -> str:
    """Where the stand-in serves a download URL (the startup script maps it the same way)."""
    return f"{MIRROR_PATH}/{url.removeprefix('https://')}"

PREFIX = "/computeMetadata/v1/"

SYSCTL_STUB = r"""#!/bin/bash
# stub sysctl: keeps "key = value" lines in $SANDBOX/sysctl.state; -p FILE applies, -n KEY reads
set -euo pipefail
state="${SANDBOX}/sysctl.state"
touch "${state}"
echo "sysctl $*" >>"${SANDBOX}/calls.log"
args=("$@")
[[ "${args[0]}" == -q ]] && args=("${args[@]:1}")
case "${args[0]}" in
  -p)
    while IFS='=' read -r key value; do
      [[ -z "${key}" || "${key}" == \#* ]] && continue
      key="$(xargs <<<"${key}")"; value="$(xargs <<<"${value}")"
      [[ -n "${SYSCTL_IGNORE:-}" && "${key}" == "${SYSCTL_IGNORE}" ]] && continue
      grep -v "^${key} = " "${state}" >"${state}.new" || true
      echo "${key} = ${value}" >>"${state}.new"; mv "${state}.new" "${state}"
    done <"${args[1]}" ;;
  -n) grep "^${args[1]} = " "${state}" | sed 's/^[^=]*= //' || echo 0 ;;
  *) exit 2 ;;
esac
"""

# A stand-in for systemd: `start` runs the unit file's ExecStart= detached (its own session, output to a log),
# `stop` sends SIGTERM and waits, as systemd's KillMode=mixed does for the main process.
SYSTEMCTL_STUB = r"""#!/bin/bash
set -euo pipefail
echo "systemctl $*" >>"${SANDBOX}/calls.log"
units="${SANDBOX}/units"
mkdir -p "${units}"
args=()
for arg in "$@"; do [[ "${arg}" == --* ]] || args+=("${arg}"); done
verb="${args[0]:-}" unit="${args[1]:-}"
pidfile="${units}/${unit}.pid"
alive() {
  [[ -f "${pidfile}" ]] || return 1
  local state
  state="$(awk '{print $3}' "/proc/$(cat "${pidfile}")/stat" 2>/dev/null || true)"
  [[ -n "${state}" && "${state}" != Z ]]
}
start() {
  [[ "${unit}" == *.timer ]] && return 0 # a timer's runs are not the stand-in's to carry out
  alive && return 0
  local exec_start
  exec_start="$(sed -n 's/^ExecStart=//p' "${PILOT_ROOT}/etc/systemd/system/${unit}" 2>/dev/null || true)"
  [[ -n "${exec_start}" ]] || { echo "Unit ${unit} not found." >&2; exit 5; }
  # like systemd: a new session, no inherited descriptors (the startup script's lock on fd 9 stays with it)
  python3 -c 'import subprocess, sys
proc = subprocess.Popen(["bash", "-c", "exec " + sys.argv[1]], start_new_session=True, close_fds=True,
                        stdin=subprocess.DEVNULL, stdout=open(sys.argv[2], "ab"), stderr=subprocess.STDOUT)
print(proc.pid)' "${exec_start}" "${units}/${unit}.log" >"${pidfile}" 9>&-
}
stop() {
  alive || return 0
  local pid
  pid="$(cat "${pidfile}")"
  kill -TERM "${pid}"
  while alive; do sleep 0.1; done
  rm -f "${pidfile}"
}
case "${verb}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  is-active) alive ;;
  daemon-reload | enable) ;;
  *) exit 1 ;;
esac
"""

# The store disk's tools for the rendezvous role: they record what they were asked and change nothing.
RECORDING_STUB = r"""#!/bin/bash
echo "$(basename "$0") $*" >>"${SANDBOX}/calls.log"
[[ "$(basename "$0")" == mountpoint ]] && exit 1
[[ "$(basename "$0")" == blkid ]] && [[ ! -e "${SANDBOX}/formatted" ]] && exit 2
[[ "$(basename "$0")" == mkfs.ext4 ]] && touch "${SANDBOX}/formatted"
exit 0
"""


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up early (the guest agent does on a 403) is no error of the stand-in's."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


# Where the stand-in answers Secret Manager's REST API (the boot path's PILOT_SECRET_MANAGER_URL in the bed)
SECRET_MANAGER_PATH = "/secretmanager/v1"
# Where a test changes a stand-in's instance attributes, as `pulumi up` changes a VM's metadata (not a GCE path).
CONTROL_PATH = "/stand-in/attributes"
PROJECT_CONTROL_PATH = "/stand-in/project"  # the same for the project's metadata (its startup-script item)
INSTANCE_CONTROL_PATH = "/stand-in/instance"  # the same for instance values (`preempted`: Compute Engine's notice)


@dataclass
class MetadataServer:
    """Compute Engine's metadata server on loopback: instance attributes (with ETags and `wait_for_change`, as GCE
    documents for watching metadata), a few instance values, guest-attribute writes, and plain files (wheels,
    release binaries) under any other path, as a download host. `change()` (or a PUT of a JSON object to
    CONTROL_PATH) changes attributes the way a metadata update does; a null value deletes one."""

    attributes: dict[str, str]
    instance: dict[str, str] = field(default_factory=lambda: {"name": "swarm-test-1"})
    files: dict[str, Path] = field(default_factory=dict)
    project: dict[str, str] = field(default_factory=dict)
    address: tuple[str, int] = ("127.0.0.1", 0)
    guest_attributes: dict[str, str] = field(default_factory=dict)
    guest_attribute_writes: list[tuple[float, str]] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    # The watch's fault modes (the next answers to a recursive attributes request): "truncate" (the body breaks
    # off), "bad-status" (a broken status line), "garbage" (not JSON), "huge" (a 40 MB body), "new-etag" (at once,
    # a new ETag every time), "same-etag" (at once, the same ETag, the content changing). "" answers properly.
    fault: str = ""
    watch_requests: list[float] = field(default_factory=list)  # when each recursive attributes request came
    url: str = ""
    base_url: str = ""
    changed: threading.Condition = field(default_factory=threading.Condition)
    # the VM's service account (its metadata token), and Secret Manager's versions it may be asked for
    # (testbed/secret_manager.py: version -> {data (base64), readers}); each access asked, with its answer's status
    service_account: str = ""
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    secret_reads: list[tuple[str, int]] = field(default_factory=list)

    def token(self) -> str:
        return "bed-token-" + hashlib.sha256(self.service_account.encode()).hexdigest()[:16]

    def secret_access(self, path: str, authorization: str) -> tuple[int, dict[str, Any]]:
        """Secret Manager's answer to GET /v1/{version}:access: the payload for a reader of the secret, else the
        API's error."""
        version = path.removesuffix(":access")
        if not self.service_account or authorization != f"Bearer {self.token()}":
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
        secret = self.secrets.get(version)
        if secret is None:
            return 404, {"error": {"code": 404, "status": "NOT_FOUND", "message": f"{version} not found"}}
        if self.service_account not in secret["readers"]:
            return 403, {"error": {"code": 403, "status": "PERMISSION_DENIED", "message":
                                   f"Permission 'secretmanager.versions.access' denied on {version}"}}
        from testbed.supervisor_harness import sv  # the VM's own CRC32C (its test checks the value)

        crc32c = sv.registry_tls.crc32c
        data = base64.b64decode(secret["data"])
        return 200, {"name": version, "payload": {"data": secret["data"], "dataCrc32c": str(crc32c(data))}}

    def etag(self) -> str:
        return hashlib.sha256(json.dumps(self.attributes, sort_keys=True).encode()).hexdigest()[:16]

    def change(self, updates: dict[str, str | None]) -> None:
        self._update(self.attributes, updates)

    def _update(self, values: dict[str, str], updates: dict[str, str | None]) -> None:
        """Set VALUES from UPDATES (None deletes) and wake every pending wait_for_change."""
        with self.changed:
            for key, value in updates.items():
                if value is None:
                    values.pop(key, None)
                else:
                    values[key] = value
            self.changed.notify_all()

    def change_project(self, updates: dict[str, str | None]) -> None:
        """What `pulumi up` does to the project's metadata (its startup-script item): a watcher's pending
        wait_for_change on that value returns."""
        self._update(self.project, updates)

    def change_instance(self, updates: dict[str, str | None]) -> None:
        """An instance value changes (`preempted` TRUE: Compute Engine preempts this Spot VM): a watcher's pending
        wait_for_change on it returns."""
        self._update(self.instance, updates)

    def instance_value_after(self, name: str, query: dict[str, str]) -> tuple[str, str]:
        """One instance value and its ETag; with wait_for_change, once its ETag differs from last_etag."""
        def value() -> str:  # every VM has `preempted`: FALSE until Compute Engine preempts it
            return self.instance.get(name, "FALSE" if name == "preempted" else "")

        def tag() -> str:
            return hashlib.sha256(value().encode()).hexdigest()[:16]

        with self.changed:
            if query.get("wait_for_change") == "true":
                last = query.get("last_etag", "")
                self.changed.wait_for(lambda: tag() != last, timeout=float(query.get("timeout_sec", 60)))
            return value(), tag()

    def project_value_after(self, name: str, query: dict[str, str]) -> tuple[str | None, str]:
        """One project value and its ETag (None: no such item); with wait_for_change, once its ETag differs from
        last_etag (or at the timeout)."""
        def tag() -> str:
            return hashlib.sha256(self.project.get(name, "").encode()).hexdigest()[:16]

        with self.changed:
            if query.get("wait_for_change") == "true":
                last = query.get("last_etag", "")
                self.changed.wait_for(lambda: tag() != last, timeout=float(query.get("timeout_sec", 60)))
            return self.project.get(name), tag()

    def attributes_after(self, query: dict[str, str]) -> tuple[dict[str, str], str]:
        """The attributes and their ETag; with wait_for_change, once they differ from last_etag (or at the
        timeout, 60 s by default), as Compute Engine answers."""
        with self.changed:
            if query.get("wait_for_change") == "true":
                last = query.get("last_etag", "")
                self.changed.wait_for(lambda: self.etag() != last, timeout=float(query.get("timeout_sec", 60)))
            return dict(self.attributes), self.etag()

    @contextmanager
    def serving(self) -> Iterator[MetadataServer]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _path(self) -> str | None:
                if self.headers.get("Metadata-Flavor") != "Google" or not self.path.startswith(PREFIX):
                    self.send_error(403)
                    return None
                return self.path[len(PREFIX):]

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                server.requested.append(self.path)
                if self.path.startswith(SECRET_MANAGER_PATH + "/"):
                    status, body = server.secret_access(self.path[len(SECRET_MANAGER_PATH) + 1:],
                                                        self.headers.get("Authorization", ""))
                    server.secret_reads.append((self.path, status))
                    self._json(status, body)
                    return
                if self.path == f"{PREFIX}instance/service-accounts/default/token" and server.service_account \
                        and self.headers.get("Metadata-Flavor") == "Google":
                    self._json(200, {"access_token": server.token(), "expires_in": 3599, "token_type": "Bearer"})
                    return
                if self.path in server.files:
                    data = server.files[self.path].read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                path = self._path()
                if path is None:
                    return
                path, _, query = path.partition("?")
                params = dict(part.partition("=")[::2] for part in query.split("&") if part)
                etag = ""
                listings = {"instance/attributes/": server.attributes, "project/attributes/": server.project}
                if path == "instance/attributes/" and params.get("recursive") == "true":
                    server.watch_requests.append(time.monotonic())
                    if server.fault and self._faulty(server.fault):
                        return
                    attributes, etag = server.attributes_after(params)
                    body = json.dumps(attributes)
                elif path in listings and "recursive=true" in query:  # what google_metadata_script_runner asks
                    body = json.dumps(listings[path])
                elif path in listings:
                    body = "".join(f"{k}\n" for k in listings[path])
                elif path.startswith("instance/") and (path[9:] in server.instance or path[9:] == "preempted"):
                    body, etag = server.instance_value_after(path[9:], params)
                elif path.startswith("instance/guest-attributes/") and path[26:] in server.guest_attributes:
                    body = server.guest_attributes[path[26:]]
                elif path.startswith("instance/attributes/") and path[20:] in server.attributes:
                    body = server.attributes[path[20:]]
                elif path.startswith("project/attributes/"):
                    value, etag = server.project_value_after(path[19:], params)
                    if value is None:
                        self.send_error(404)
                        return
                    body = value
                else:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                if etag:
                    self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _faulty(self, fault: str) -> bool:
                """Answer with FAULT instead of the attributes; False when the fault is one of content only."""
                raw = json.dumps(server.attributes).encode()
                if fault == "bad-status":
                    self.wfile.write(b"HTTP/1.1 2OO NOT A STATUS\r\n\r\n")
                    self.close_connection = True
                    return True
                head = {"truncate": (raw, len(raw) + 100), "garbage": (b"{not json", 9),
                        "huge": (b" " * (40 << 20), 40 << 20),
                        "new-etag": (raw, len(raw)), "same-etag": (raw, len(raw))}[fault]
                self.send_response(200)
                tag = {"new-etag": os.urandom(8).hex(), "same-etag": "stuck"}.get(fault, server.etag())
                self.send_header("ETag", tag)
                self.send_header("Content-Length", str(head[1]))
                self.end_headers()
                self.wfile.write(head[0] if fault != "truncate" else head[0][: len(head[0]) // 2])
                self.close_connection = True
                return True

            def do_PUT(self) -> None:
                if self.path in (CONTROL_PATH, PROJECT_CONTROL_PATH, INSTANCE_CONTROL_PATH):
                    length = int(self.headers.get("Content-Length") or 0)
                    change = {CONTROL_PATH: server.change, PROJECT_CONTROL_PATH: server.change_project,
                              INSTANCE_CONTROL_PATH: server.change_instance}[self.path]
                    change(json.loads(self.rfile.read(length)))
                    self.send_response(204)
                    self.end_headers()
                    return
                path = self._path()
                if path is None:
                    return
                length = int(self.headers.get("Content-Length") or 0)
                key = path.removeprefix("instance/guest-attributes/")
                server.guest_attributes[key] = self.rfile.read(length).decode()
                server.guest_attribute_writes.append((time.monotonic(), key))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        httpd = _QuietServer(self.address, Handler)
        host, port = httpd.server_address[:2]
        self.base_url = f"http://{host}" if port == 80 else f"http://{host}:{port}"
        self.url = f"{self.base_url}{PREFIX.rstrip('/')}"
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()


def cached_wheel(version: str = pilot.PILOT_VERSION, arch: str = platform.machine()) -> tuple[Wheel, Path]:
    """A pinned pilotprotocol wheel, downloaded by scripts/dev.sh into .cache/wheels (tests never download)."""
    wheel = next((w for w in wheels() if w.version == version and w.arch == arch), None)
    if wheel is None:
        pytest.fail(f"no pilotprotocol {version} wheel for {arch} in fleet/facts/data/pilot_releases.yaml")
    path = WHEEL_CACHE / wheel.filename
    if not path.exists():
        pytest.fail(f"{path} is missing: run `bash scripts/dev.sh test`, which downloads it")
    return wheel, path


@dataclass
class BootSandbox:
    """A VM's root under `base/root`, stub system commands on PATH, the rendered startup script.

    The supervisor the script starts (through the stand-in systemctl) runs the stand-in daemon; `shutdown()`
    stops it and anything it left."""

    base: Path
    metadata: MetadataServer
    boot_id: str = "boot-1"

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def script(self) -> Path:
        return self.base / "startup-script"

    def prepare(self) -> None:
        stubs = self.base / "stubs"
        stubs.mkdir(parents=True, exist_ok=True)
        bodies = {"sysctl": SYSCTL_STUB, "systemctl": SYSTEMCTL_STUB,
                  **dict.fromkeys(("blkid", "mkfs.ext4", "mount", "mountpoint"), RECORDING_STUB)}
        for name, body in bodies.items():
            (stubs / name).write_text(body)
            (stubs / name).chmod(0o755)
        self.root.mkdir(exist_ok=True)
        self.script.write_text(render_startup_script())
        wheel, path = cached_wheel()
        self.metadata.files[mirror_path(wheel.url)] = path

    def env(self, **extra: str) -> dict[str, str]:
        boot_file = self.base / "boot_id"
        if not boot_file.exists() or boot_file.read_text() != self.boot_id + "\n":  # rewriting races readers
            boot_file.write_text(self.boot_id + "\n")
        env = {"PATH": f"{self.base / 'stubs'}:/usr/sbin:/usr/bin:/sbin:/bin", "SANDBOX": str(self.base),
               # the sandbox creates no system user on this machine (the system-container boot test does)
               "PILOT_ROOT": str(self.root), "PILOT_SYSTEM_USERS": "0",
               "PILOT_BOOT_ID_FILE": str(self.base / "boot_id"),
               "PILOT_DOWNLOAD_MIRROR": self.metadata.base_url + MIRROR_PATH, "PILOT_DAEMON_BIN": str(STANDIN),
               **extra}
        if self.metadata.url:  # empty: the script's own default, the link-local metadata server
            env["PILOT_METADATA_URL"] = self.metadata.url
        return env

    def run(self, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(self.script)], env=self.env(**extra), capture_output=True, text=True,
                              timeout=120, check=False)

    def start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(["bash", str(self.script)], env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def systemctl(self, *args: str) -> int:
        return subprocess.run([str(self.base / "stubs" / "systemctl"), *args], env=self.env(),
                              timeout=60, check=False).returncode

    def supervisor_status(self) -> dict[str, Any]:
        path = self.root / "run/pilot-fleet/status.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def unit_log(self, unit: str) -> str:
        """What the stand-in systemctl's UNIT printed (its journal)."""
        log = self.base / "units" / f"{unit}.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def agent_starts(self) -> list[str]:
        log = self.root / "var/lib/pilot-fleet/standin/events.log"
        return [line for line in (log.read_text().splitlines() if log.exists() else []) if " start " in line]

    def shutdown(self) -> None:
        for pidfile in (self.base / "units").glob("*.pid"):
            self.systemctl("stop", pidfile.name.removesuffix(".pid"))
        kill_agents_under(self.root)

    def calls(self) -> list[str]:
        log = self.base / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def sysctl_state(self) -> dict[str, str]:
        state = self.base / "sysctl.state"
        lines = state.read_text().splitlines() if state.exists() else []
        return dict(line.split(" = ", 1) for line in lines)


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_agents_under(root: Path) -> None:
    """SIGKILL every process whose command line names a path under `root` (agents a test left behind)."""
    marker = str(root).encode()
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            with suppress(OSError):
                if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(int(pid), signal.SIGKILL)


def serve_forever(spec_path: Path) -> None:
    """Serve a metadata server described by a JSON file until killed (run inside a test's network namespace).

    `listen` (optional) names HOST:PORT stand-ins for a registry's TCP port to hold open as well."""
    from testbed.supervisor_harness import registry_port

    spec = json.loads(spec_path.read_text())
    server = MetadataServer(spec["attributes"], instance=spec["instance"], project=spec["project"],
                            files={k: Path(v) for k, v in spec["files"].items()},
                            address=(spec["host"], spec["port"]), service_account=spec.get("service_account", ""),
                            secrets=spec.get("secrets", {}))
    with ExitStack() as stack:
        for address in spec.get("listen", []):
            host, _, port = address.rpartition(":")
            stack.enter_context(registry_port(host, int(port)))
        stack.enter_context(server.serving())
        print("serving", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    serve_forever(Path(sys.argv[1]))
