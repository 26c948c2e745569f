"""A startup script with the guarding prologue's shape, whose run directory is a command's output
(`RUN_DIR="$(mktemp -d)"`): every run gets its own lock and boot marker, so nothing stops a second run, and a
reboot's run finds no marker. `startup-script-guarded` must reject it (the lock and marker must be fixed paths in
/run). The tuning is all there and runs."""

import pulumi_gcp as gcp

from tests.scenarios.guard_parts import COMPUTED_LOCK

gcp.compute.ProjectMetadataItem("startup-script", key="startup-script", value=COMPUTED_LOCK)
