"""The VM contract as the program rendered it (fleet/vm_contract.py's `render()`): metadata keys, each attribute's
form, bounds and default, guest attributes, status fields, metric names and the kernel settings. It travels as
plain JSON in the startup script, which writes it beside this zipapp as `contract.json`; nothing here holds a copy
of any of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FILE_NAME = "contract.json"
_loaded: dict[str, Any] = {}


class ContractError(RuntimeError):
    """No contract, or not one this supervisor can read."""


def load(path: Path) -> None:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ContractError(f"cannot read the VM contract {path}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), dict):
        raise ContractError(f"{path} is not a VM contract (fleet/vm_contract.py renders it)")
    _loaded.clear()
    _loaded.update(document)


def contract() -> dict[str, Any]:
    if not _loaded:
        raise ContractError("no VM contract loaded (the startup script writes contract.json beside the zipapp)")
    return _loaded


def key(name: str) -> str:
    """A metadata key by its contract name (e.g. TARGET_AGENTS)."""
    return str(contract()["keys"][name])


def attributes(role: str) -> dict[str, dict[str, Any]]:
    """field -> {key, kind, why, default, low, high, low_open, pattern, what} of a role's attributes."""
    rules: dict[str, dict[str, Any]] = contract()[role]
    return rules


def guest_attribute(name: str) -> str:
    return str(contract()["guest_attributes"][name])
