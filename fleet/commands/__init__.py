"""The `python -m fleet` subcommands, one module per area; fleet/cli.py holds the parser."""

from __future__ import annotations

import sys
from pathlib import Path

# The Pulumi project the commands read stacks from by default: this checkout; an installed wheel has no checkout
# around it, so there the directory the command runs in (pass --program to name another).
_CHECKOUT = Path(__file__).resolve().parents[2]
PROJECT_DIR = _CHECKOUT if (_CHECKOUT / "Pulumi.yaml").is_file() else Path.cwd()
EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR
