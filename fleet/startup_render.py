"""Renders startup/ into the one project-level startup script: the parts joined by role (the common part with its
guarded prologue first), the VM contract as JSON, and the supervisor package as one zipapp, so the VM receives one
artefact. The same bytes from run to run: a plan diffs cleanly, and `pulumi up` changes the script only when its
sources change."""

from __future__ import annotations

import base64
import io
import json
import re
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
# Compute Engine limits a metadata value to 256 KB. The script keeps to half of it, so that a release has room
# to grow and the limit is never met on a deploy: past the budget the plan fails, naming both figures.
METADATA_VALUE_LIMIT = 256 * 1024
SCRIPT_BUDGET = METADATA_VALUE_LIMIT // 2
# The supervisor's modules the zipapp packs, by name: what runs as root on every VM is exactly these tracked files,
# never a scratch file left beside them (tests/test_startup_script.py holds this list to `git ls-files`).
SUPERVISOR_MODULES = ("__init__.py", "__main__.py", "agents.py", "attributes.py", "boot.py", "config.py",
                      "contract.py", "faults.py", "handover.py", "health.py", "install.py", "journal.py", "live.py",
                      "loop.py", "pacing.py", "privilege.py", "probes.py", "registry_tls.py", "rolling.py",
                      "rollout.py", "sources.py", "store.py", "supervisor.py", "upgrade.py")
# Fixed member times: the zipapp's bytes depend on its sources alone.
_EPOCH = (1980, 1, 1, 0, 0, 0)
ZIPAPP_MAIN = "import sys\n\nfrom pilot_supervisor.__main__ import main\n\nsys.exit(main())\n"


def render_contract() -> str:
    """One line of JSON: it travels in the script, read by the zipapp alone (compact: the script's budget)."""
    return json.dumps(vm_contract.render(), sort_keys=True, separators=(",", ":")) + "\n"


# Comment lines the script keeps: the shebang, the renderer's and the policy pack's markers (`# @...`), and
# shellcheck's directives. The rest of the parts' comments stay in startup/ (the script's budget): the first part's
# header, which says what the script does and why, is kept whole.
KEPT_COMMENTS = ("#!", "# @", "# shellcheck")
HEREDOC = re.compile(r"(?<!<)<<-?'?([A-Za-z0-9_]+)'?\s*$")


def without_comments(part: str, *, keep_header: bool = False) -> str:
    """PART without its comment lines (but KEPT_COMMENTS, and lines inside heredocs, which are content); with
    KEEP_HEADER, its leading comment block too."""
    out, heredoc_end, header = [], None, keep_header
    for line in part.splitlines(keepends=True):
        text = line.strip()
        if heredoc_end is not None:
            out.append(line)
            if text == heredoc_end:
                heredoc_end = None
            continue
        if header and text.startswith("#"):
            out.append(line)
            continue
        header = False
        if text.startswith("#") and not text.startswith(KEPT_COMMENTS):
            continue
        match = HEREDOC.search(line)
        if match:
            heredoc_end = match[1]
        out.append(line)
    return "".join(out)


def supervisor_sources(package: Path = SUPERVISOR_PACKAGE) -> dict[str, bytes]:
    """archive name -> bytes of each of SUPERVISOR_MODULES in PACKAGE."""
    missing = [name for name in SUPERVISOR_MODULES if not (package / name).is_file()]
    if missing:
        raise ValueError(f"{package}: the supervisor modules {', '.join(missing)} are not there "
                         "(fleet/startup_render.py SUPERVISOR_MODULES lists what the zipapp packs)")
    return {f"pilot_supervisor/{name}": (package / name).read_bytes() for name in SUPERVISOR_MODULES}


def build_zipapp(package: Path = SUPERVISOR_PACKAGE) -> bytes:
    """The supervisor package as a zipapp (`python3 pilot-supervisor.pyz COMMAND`), deflated at level 9 with fixed
    member names, order, times and modes: the bytes depend on the sources and on zlib's deflate alone, which gives
    the same output wherever CPython runs on zlib 1.2 or 1.3 (a zlib-ng build compresses differently: a plan there
    shows a changed script, and the hosts take it up as a release with the same modules)."""
    members = {"__main__.py": ZIPAPP_MAIN.encode(), **supervisor_sources(package)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, members[name], compresslevel=9)
    return buffer.getvalue()


def render_startup_script() -> str:
    parts = [without_comments((STARTUP_DIR / name).read_text(), keep_header=i == 0)
             for i, name in enumerate(SCRIPT_PARTS)]
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
    if size > SCRIPT_BUDGET:
        raise ValueError(f"the startup script is {size} bytes: over its budget of {SCRIPT_BUDGET} bytes, half of "
                         f"Compute Engine's {METADATA_VALUE_LIMIT}-byte limit of a metadata value")
    return body
