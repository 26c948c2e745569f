"""The base image of the whole-fleet test bed: one Debian 12 root file system (mmdebstrap, with systemd and
google-guest-agent), built once and cached under .cache/vm/<key>; every host boots an overlay of it (vm_host.py).

Stand-ins the image carries, each because the real part cannot run in a container on a test machine:
  - `sysctl`: /proc/sys is read-only inside a container; /usr/local/sbin/sysctl keeps the values the script applies
    in a file and reads them back from there.
  - the internet: a drop-in on google-startup-scripts.service and pilot-agents.service points the script's and the
    supervisor's PILOT_DOWNLOAD_MIRROR at the host's metadata stand-in, which serves the pinned files (vm_host.py).

`python -m testbed.vm_image` builds it ahead of the tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testbed.boot_sandbox import SECRET_MANAGER_PATH, SYSCTL_STUB

REPO = Path(__file__).resolve().parent.parent
IMAGE_CACHE = REPO / ".cache" / "vm"
SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "curl", "ca-certificates", "python3", "iproute2", "procps",
            "google-guest-agent")
METADATA_IP = "169.254.169.254"
SYSCTL_STANDIN = SYSCTL_STUB.replace(
    "set -euo pipefail\n",
    "set -euo pipefail\n# test bed stand-in: /proc/sys is read-only in a container\n"
    "SANDBOX=/var/lib/sysctl-standin\nmkdir -p \"${SANDBOX}\"\n", 1)
MIRROR_DROPIN = f"[Service]\nEnvironment=PILOT_DOWNLOAD_MIRROR=http://{METADATA_IP}/mirror\n"
# the rendezvous reads its registry key from the metadata stand-in's Secret Manager (testbed/secret_manager.py)
SECRET_MANAGER_DROPIN = f"[Service]\nEnvironment=PILOT_SECRET_MANAGER_URL=http://{METADATA_IP}{SECRET_MANAGER_PATH}\n"
IMAGE_FILES = {
    "usr/local/sbin/sysctl": (SYSCTL_STANDIN, 0o755),
    # the boot path and the supervisor (which installs new versions live) download through the mirror
    "etc/systemd/system/google-startup-scripts.service.d/50-test-bed-mirror.conf": (MIRROR_DROPIN, 0o644),
    "etc/systemd/system/pilot-agents.service.d/50-test-bed-mirror.conf": (MIRROR_DROPIN, 0o644),
    "etc/systemd/system/google-startup-scripts.service.d/51-test-bed-secret-manager.conf":
        (SECRET_MANAGER_DROPIN, 0o644),
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


if __name__ == "__main__":  # `python -m testbed.vm_image`: build the cached base image ahead of the tests
    try:
        print(ensure_image())
    except TestBedError as exc:
        sys.exit(f"error: {exc}")
