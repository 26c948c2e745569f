"""Secret Manager for the test bed: the secret versions a plan declares, with their data, and who may read each.

The bed serves the `access` call (GET /v1/{version}:access with the VM's bearer token) from each VM's metadata
stand-in (boot_sandbox.MetadataServer), which also issues the token at the metadata server's own path. A stand-in,
because the real API needs Google credentials and the network; it keeps what the real one decides: a VM reads a
version only if the plan's IAM grants its service account `secretAccessor` on that secret, and the answer is the
API's JSON (payload.data in base64, its CRC32C).

The plan's text masks secrets ([secret]); the data comes from running the program under the mock engine here, in a
subprocess of its own (the engine's state is per process), with secrets revealed to the bed alone."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from fleet.components.registry_tls import SECRET_ACCESSOR
from testbed.vm_image import REPO, TestBedError

SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
SECRET_IAM_MEMBER = "gcp:secretmanager/secretIamMember:SecretIamMember"


def _planned(directory: Path, stack: str) -> dict[str, Any]:
    """{version name: {data (base64), readers [e-mails]}} of the program in DIRECTORY for STACK (in this process)."""
    from fleet.plan.mock_engine import plan_program, secret_version_name, struct_to_json
    from fleet.plan.stack_files import load_project

    project = load_project(directory, stack)
    plan = plan_program(project, stack, str(project.config.get("gcp:project", "mock-project")))
    readers: dict[str, list[str]] = {}
    for member in plan.of_type(SECRET_IAM_MEMBER):
        inputs = member.inputs
        if inputs.get("role") == SECRET_ACCESSOR and str(inputs.get("member", "")).startswith("serviceAccount:"):
            secret = f"projects/{inputs['project']}/secrets/{inputs['secretId']}"
            readers.setdefault(secret, []).append(str(inputs["member"]).removeprefix("serviceAccount:"))
    out = {}
    for version in plan.of_type(SECRET_VERSION):
        inputs = struct_to_json(version.properties, reveal_secrets=True)
        secret, data = str(inputs["secret"]), inputs["secretData"]
        data = data["value"] if isinstance(data, dict) else data  # the wire's secret envelope, opened
        out[secret_version_name(secret)] = {
            "data": base64.b64encode(str(data).encode()).decode(),
            "readers": readers.get(secret, [])}
    return out


def planned_secrets(directory: Path, stack: str) -> dict[str, Any]:
    """The same, from a subprocess (a test or the bed has its own Pulumi runtime state, or none)."""
    result = subprocess.run([sys.executable, "-m", "testbed.secret_manager", str(directory), stack], cwd=REPO,
                            capture_output=True, text=True, timeout=180, check=False)
    if result.returncode != 0:
        raise TestBedError(f"reading the planned secrets of {stack} failed: {result.stderr[-2000:]}")
    return dict(json.loads(result.stdout))


if __name__ == "__main__":
    print(json.dumps(_planned(Path(sys.argv[1]), sys.argv[2])))
