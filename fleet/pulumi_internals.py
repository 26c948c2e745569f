"""The one place this project reaches into the Pulumi SDK's internals, each use with the reason there is no public
API for it. Everything else uses the public API (`pulumi.Config`, resources, `pulumi.export`, `set_mocks`).

`problems()` says what an SDK upgrade removed or renamed; tests/test_pulumi_internals.py runs it, so an upgrade that
breaks one of these fails there, by name, instead of deep inside a plan. requirements.txt pins pulumi to a range
(>=3.272,<4) that this module was written against; widen it only with that test green.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Mapping
from typing import Any

# module -> (attribute, why there is no public API)
USED: dict[str, tuple[tuple[str, str], ...]] = {
    "pulumi.runtime.config": (
        ("get_config_env", "every config key the engine passed: no public API enumerates keys, and keys under an "
                           "unknown namespace (a typo such as `pilot-fleets:`) must be refused"),
        ("CONFIG", "the same, for config set in-process (the offline plan)"),
        ("set_all_config", "the offline plan gives the program its stack's config as the engine would"),
    ),
    "pulumi.runtime.settings": (
        ("set_root_resource", "the offline plan replaces the root stack that set_mocks registers with one that runs "
                              "the program, as the language host does"),
    ),
    "pulumi.runtime.stack": (
        ("run_in_stack", "the offline plan runs the program inside a stack, as the language host does"),
    ),
    "pulumi.runtime.rpc": (
        ("_special_sig_key", "the wire form of a secret ({sig: secret sig, value: ...}) is the engine's protocol; "
                             "the SDK names its markers only privately, and the offline plan must not print a "
                             "secret's value"),
        ("_special_secret_sig", "the same"),
    ),
    "pulumi.runtime.sync_await": (
        ("_sync_await", "the offline plan waits for the program's stack on the current event loop"),
    ),
}


def problems() -> list[str]:
    """What this SDK lacks of USED, one line each (empty when everything is there)."""
    found = []
    for module_name, attributes in USED.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            found.append(f"{module_name}: cannot be imported ({exc})")
            continue
        found += [f"{module_name}.{name} is gone (used for: {why})" for name, why in attributes
                  if not hasattr(module, name)]
    return found


def _get(module_name: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise RuntimeError(f"pulumi {sdk_version()}: {module_name}.{name} is gone; fleet/pulumi_internals.py "
                           "needs updating for this SDK (see its problems())") from None


def sdk_version() -> str:
    return importlib.metadata.version("pulumi")


def is_secret(value: Any) -> bool:
    """Whether VALUE (a property in its JSON wire form) is a secret: {sig key: secret sig, "value": ...}."""
    return isinstance(value, Mapping) and \
        value.get(_get("pulumi.runtime.rpc", "_special_sig_key")) == _get("pulumi.runtime.rpc", "_special_secret_sig")


def config_keys() -> list[str]:
    """Every config key of the running stack (values are read through `pulumi.Config`)."""
    env: Mapping[str, Any] = _get("pulumi.runtime.config", "get_config_env")()
    in_process: Mapping[str, Any] = _get("pulumi.runtime.config", "CONFIG").get()
    return sorted({*env, *in_process})


def set_stack_config(config: Mapping[str, Any], secret_keys: list[str]) -> None:
    _get("pulumi.runtime.config", "set_all_config")(dict(config), secret_keys)


def reset_root_resource() -> None:
    _get("pulumi.runtime.settings", "set_root_resource")(None)


def run_program(program: Callable[[], None]) -> None:
    """Run `program` in a stack and wait for every resource it registered."""
    run_in_stack = _get("pulumi.runtime.stack", "run_in_stack")
    _get("pulumi.runtime.sync_await", "_sync_await")(run_in_stack(program))
