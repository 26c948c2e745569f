"""A project startup script that names every guard and every tuning key, but exits before its lock and boot
marker run: a pattern search finds them all; the pack's prologue check does not (guards that run)."""

import pulumi_gcp as gcp

from tests.scenarios.guard_parts import GUARDS_AFTER_EXIT

gcp.compute.ProjectMetadataItem("startup-script", key="startup-script", value=GUARDS_AFTER_EXIT)
