"""The fleet as shipped, plus zone-level metadata carrying a startup-script: Compute Engine's zonal metadata
overrides the project's for every VM in that zone, so the fleet's one startup-script would not run there
(effective metadata; `one-project-startup-script` must reject it)."""

import runpy
from pathlib import Path

import pulumi_gcp as gcp

runpy.run_path(str(Path(__file__).resolve().parents[3] / "__main__.py"), run_name="__main__")
gcp.compute.InstanceSettings("zone-a-settings", zone="us-central1-a",
                             metadata={"items": {"startup-script": "for i in $(seq 500); do pilot-daemon & done"}})
