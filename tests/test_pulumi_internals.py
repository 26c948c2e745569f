"""The Pulumi SDK internals this project uses are all in fleet/pulumi_internals.py: this fails by name when an SDK
upgrade removes one, instead of deep inside a plan."""

from __future__ import annotations

import types

import pytest

from fleet import pulumi_internals


def test_every_internal_the_project_uses_is_in_this_sdk() -> None:
    assert pulumi_internals.problems() == [], (
        f"pulumi {pulumi_internals.sdk_version()} changed what fleet/pulumi_internals.py relies on; update it (and "
        "the range in requirements.txt)")


def test_a_missing_internal_is_named_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: an SDK without `_sync_await` is reported with what it was used for."""
    import pulumi.runtime.sync_await as sync_await

    stripped = types.ModuleType(sync_await.__name__)
    monkeypatch.setitem(__import__("sys").modules, sync_await.__name__, stripped)
    assert pulumi_internals.problems() == [
        "pulumi.runtime.sync_await._sync_await is gone (used for: the offline plan waits for the program's stack "
        "on the current event loop)"]
    with pytest.raises(RuntimeError, match=r"pulumi.runtime.sync_await._sync_await is gone"):
        pulumi_internals.run_program(lambda: None)
