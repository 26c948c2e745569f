"""The one project-level startup script: rendered from startup/ into a single ProjectMetadataItem."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from fleet import pilot

STARTUP_DIR = Path(__file__).resolve().parent.parent / "startup"
SCRIPT_PATH = STARTUP_DIR / "startup.sh"
# Compute Engine limits a metadata value to 256 KB.
METADATA_VALUE_LIMIT = 256 * 1024


def render_startup_script() -> str:
    body = SCRIPT_PATH.read_text()
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
