"""The startup script as shipped: lint-clean and small enough to be one metadata value."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleet.startup_script import METADATA_VALUE_LIMIT, SCRIPT_PATH, render_startup_script

REPO = Path(__file__).resolve().parent.parent
SHELL_SCRIPTS = sorted([*REPO.glob("startup/*.sh"), REPO / "scripts" / "dev.sh", REPO / ".ci" / "run"])


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck_and_bash_n(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    result = subprocess.run(["shellcheck", "--severity=style", str(script)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout


def test_rendered_script_is_the_file_and_fits_metadata() -> None:
    body = render_startup_script()
    assert body == SCRIPT_PATH.read_text()
    assert len(body.encode()) < METADATA_VALUE_LIMIT
    assert body.startswith("#!/bin/bash\n") and "set -euo pipefail" in body


def test_script_reads_only_the_fleets_metadata_keys() -> None:
    # bash cannot import fleet/pilot.py: this keeps the script's key names and the program's in step
    import re

    from fleet import pilot

    read = set(re.findall(r"attribute (pilot-[a-z-]+)", SCRIPT_PATH.read_text()))
    known = {v for k, v in vars(pilot.MetadataKey).items() if k.isupper()}
    assert read and read <= known, read - known


def test_script_and_policy_agree_on_script_keys() -> None:
    import re
    import sys

    sys.path.insert(0, str(REPO / "policies"))
    from fleet_policies.gce import script_keys

    pattern = re.search(r"SCRIPT_KEYS_RE='([^']+)'", SCRIPT_PATH.read_text()).group(1)
    sample = ["startup-script", "startup-script-url", "user-data", "user-data-encoding", "shutdown-script",
              "shutdown-script-url", "sysprep-specialize-script-ps1", "windows-startup-script-cmd", "pilot-role",
              "enable-oslogin", "startup-scripts-note", "windows-keys"]
    assert sorted(k for k in sample if re.match(pattern, k)) == script_keys(dict.fromkeys(sample))
