"""The supervisor's own code (startup/pilot_supervisor/, standard library only), imported where the renderer packs it,
for the planner: the cold-start model replays the supervisor's bucket and tick instead of copying them."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from fleet.startup_render import SUPERVISOR_PACKAGE


def supervisor_module(name: str) -> ModuleType:
    """pilot_supervisor.NAME, from the package the startup script carries (its parent directory on the path: the
    package is a top-level one on the VM, and in the tests' zipapp)."""
    where = str(SUPERVISOR_PACKAGE.parent)
    if where not in sys.path and "pilot_supervisor" not in sys.modules:
        sys.path.append(where)
    return importlib.import_module(f"pilot_supervisor.{name}")
