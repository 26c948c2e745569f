"""Stack outputs through the Pulumi Automation API (`verify --stack NAME`); their schema is fleet/outputs.py."""

from __future__ import annotations

import json

from fleet.outputs import OutputsError, StackOutputs, parse_outputs


def outputs_from_stack(stack: str, work_dir: str) -> StackOutputs:
    """Through the Automation API (needs the Pulumi CLI and a logged-in backend)."""
    try:
        from pulumi import automation
    except ImportError as exc:  # pragma: no cover - pulumi is a requirement
        raise OutputsError(f"the Pulumi Automation API is not available: {exc}") from None
    try:
        selected = automation.select_stack(stack_name=stack, work_dir=work_dir)
        values = {k: v.value for k, v in selected.outputs().items()}
    except Exception as exc:  # noqa: BLE001 - the Automation API raises many kinds; all mean "cannot read"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OutputsError(f"stack {stack!r}: cannot read its outputs through the Pulumi Automation API "
                           f"(needs the pulumi CLI and `pulumi login`): {first}") from None
    return parse_outputs(json.dumps(values), f"stack {stack!r}")
