"""Renders startup/ into the one project-level startup script: the parts joined by role (the common part with its
guarded prologue first), the VM contract as JSON, and the supervisor package as one zipapp, so the VM receives one
artefact. The same bytes from run to run: a plan diffs cleanly, and `pulumi up` changes the script only when its
sources change."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

from fleet import vm_contract


def _startup_dir() -> Path:
    """startup/ of the checkout; in an installed wheel its copy, fleet/startup_files/ (pyproject.toml maps it)."""
    package = Path(__file__).resolve().parent
    bundled = package / "startup_files"
    return bundled if bundled.is_dir() else package.parent / "startup"


STARTUP_DIR = _startup_dir()
# joined in this order; the first begins with the prologue the policy pack checks line by line
SCRIPT_PARTS = ("common.sh", "swarm.sh", "rendezvous.sh", "main.sh")
SUPERVISOR_PACKAGE = STARTUP_DIR / "pilot_supervisor"
CONTRACT_MARKER = "# @vm-contract\n"
ZIPAPP_MARKER = "# @supervisor-zipapp\n"
HEREDOC_ENDS = ("PILOT_VM_CONTRACT", "PILOT_SUPERVISOR_PYZ")
# Compute Engine limits a metadata value to 256 KB.
METADATA_VALUE_LIMIT = 256 * 1024
# Fixed member times: the zipapp's bytes depend on its sources alone.
_EPOCH = (1980, 1, 1, 0, 0, 0)
ZIPAPP_MAIN = "import sys\n\nfrom pilot_supervisor.__main__ import main\n\nsys.exit(main())\n"


def render_contract() -> str:
    return json.dumps(vm_contract.render(), indent=1, sort_keys=True) + "\n"


def supervisor_sources() -> dict[str, bytes]:
    """archive name -> bytes of every module of the supervisor package."""
    files = sorted(SUPERVISOR_PACKAGE.glob("*.py"))
    if not files:
        raise ValueError(f"{SUPERVISOR_PACKAGE}: no supervisor package there")
    return {f"pilot_supervisor/{path.name}": path.read_bytes() for path in files}


def build_zipapp() -> bytes:
    """The supervisor package as a zipapp (`python3 pilot-supervisor.pyz COMMAND`). Stored, not deflated: zlib's
    output differs between builds of it, and the script must render to the same bytes on every deployer's machine."""
    members = {"__main__.py": ZIPAPP_MAIN.encode(), **supervisor_sources()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, members[name])
    return buffer.getvalue()


def render_startup_script() -> str:
    parts = [(STARTUP_DIR / name).read_text() for name in SCRIPT_PARTS]
    body = "\n".join(part if i == 0 else part.removeprefix("# shellcheck shell=bash\n")
                     for i, part in enumerate(parts))
    for marker in (CONTRACT_MARKER, ZIPAPP_MARKER):
        if body.count(marker) != 1:
            raise ValueError(f"{STARTUP_DIR}: the marker {marker.strip()!r} must appear once in {SCRIPT_PARTS}")
    contract = render_contract()
    if any(end in contract.splitlines() for end in HEREDOC_ENDS):
        raise ValueError("the VM contract contains a heredoc terminator")
    zipapp = base64.encodebytes(build_zipapp()).decode()
    body = body.replace(CONTRACT_MARKER, contract).replace(ZIPAPP_MARKER, zipapp)
    size = len(body.encode())
    if size > METADATA_VALUE_LIMIT:
        raise ValueError(f"the startup script is {size} bytes: over the {METADATA_VALUE_LIMIT}-byte limit of a "
                         "metadata value")
    return body
