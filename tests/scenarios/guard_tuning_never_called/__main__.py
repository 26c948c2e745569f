"""A startup script with the guarding prologue as the fleet writes it, whose kernel and unit tuning sit in a
function that nothing calls: every key is in the text, none is applied. `startup-script-guarded` must reject it
(the tuning must be on the boot path)."""

import pulumi_gcp as gcp

from tests.scenarios.guard_parts import TUNING_NEVER_CALLED

gcp.compute.ProjectMetadataItem("startup-script", key="startup-script", value=TUNING_NEVER_CALLED)
