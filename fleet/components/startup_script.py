"""The one project-level startup script (rendered from startup/ by fleet/startup_render.py) as ONE metadata item."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from fleet.startup_render import render_startup_script
from fleet.vm_contract import MetadataKey


@dataclass(frozen=True, kw_only=True)
class ProjectStartupScriptArgs:
    project: str


class ProjectStartupScript(pulumi.ComponentResource):
    """`startup-script` as ONE project metadata key. Never ProjectMetadata: that would own (and wipe) every key."""

    def __init__(self, name: str, args: ProjectStartupScriptArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pilot-fleet:fleet:ProjectStartupScript", name, None, opts)
        self.item = gcp.compute.ProjectMetadataItem(
            name, project=args.project, key=MetadataKey.STARTUP_SCRIPT,
            value=render_startup_script(), opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})
