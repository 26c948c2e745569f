"""A sandboxed VM for the startup script: a metadata server on loopback, stub sysctl/systemctl, a private root.

Nothing here touches this machine's kernel settings or services: `sysctl` and `systemctl` are stubs on PATH
that record what they were asked into files under the sandbox.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fleet.startup_script import SCRIPT_PATH

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

SYSTEMCTL_STUB = r"""#!/bin/bash
set -euo pipefail
echo "systemctl $*" >>"${SANDBOX}/calls.log"
"""


@dataclass
class MetadataServer:
    attributes: dict[str, str]
    guest_attributes: dict[str, str] = field(default_factory=dict)
    guest_attribute_writes: list[tuple[float, str]] = field(default_factory=list)
    url: str = ""

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

            def do_GET(self) -> None:
                path = self._path()
                if path is None:
                    return
                if path == "instance/attributes/":
                    body = "".join(f"{k}\n" for k in server.attributes)
                elif path.startswith("instance/attributes/") and path[20:] in server.attributes:
                    body = server.attributes[path[20:]]
                else:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
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

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}{PREFIX.rstrip('/')}"
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()


@dataclass
class BootSandbox:
    base: Path
    metadata: MetadataServer
    boot_id: str = "boot-1"

    @property
    def root(self) -> Path:
        return self.base / "root"

    def prepare(self) -> None:
        stubs = self.base / "stubs"
        stubs.mkdir(parents=True, exist_ok=True)
        for name, body in (("sysctl", SYSCTL_STUB), ("systemctl", SYSTEMCTL_STUB)):
            (stubs / name).write_text(body)
            (stubs / name).chmod(0o755)
        self.root.mkdir(exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        boot_file = self.base / "boot_id"
        if not boot_file.exists() or boot_file.read_text() != self.boot_id + "\n":  # rewriting races readers
            boot_file.write_text(self.boot_id + "\n")
        return {"PATH": f"{self.base / 'stubs'}:/usr/bin:/bin", "SANDBOX": str(self.base),
                "PILOT_ROOT": str(self.root), "PILOT_METADATA_URL": self.metadata.url,
                "PILOT_BOOT_ID_FILE": str(self.base / "boot_id"), **extra}

    def run(self, script: Path = SCRIPT_PATH, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(script)], env=self.env(**extra), capture_output=True, text=True,
                              timeout=60, check=False)

    def start(self, script: Path = SCRIPT_PATH) -> subprocess.Popen[str]:
        return subprocess.Popen(["bash", str(script)], env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def calls(self) -> list[str]:
        log = self.base / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def sysctl_state(self) -> dict[str, str]:
        state = self.base / "sysctl.state"
        lines = state.read_text().splitlines() if state.exists() else []
        return dict(line.split(" = ", 1) for line in lines)
