"""The startup script as ProjectMetadata: it would own, and wipe, every other project metadata key."""

import pulumi_gcp as gcp

gcp.compute.ProjectMetadata("project-metadata", metadata={"startup-script": "#!/bin/bash\necho hi\n"})
