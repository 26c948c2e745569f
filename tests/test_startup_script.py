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
