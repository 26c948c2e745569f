"""The configuration reference, docs/configuration.md, generated from the stack config's models (fleet/config/
model.py): every key as `pulumi config set --path` names it, its type and bounds, its default and what it means, read
from the fields themselves, so the reference cannot drift from what the program accepts.

Run `python -m fleet.generators.config_reference` after changing a model; tests/test_docs.py fails while the file
and the models differ.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from fleet.config.fields import Kind
from fleet.config.model import AgentSettings, FleetConfig, GcpSettings, SwarmHostConfig, SwarmPoolConfig
from fleet.facts import pilot

REFERENCE_PATH = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
NAMESPACE = pilot.PROJECT_NAME
# Sections of their own (their fields are listed under them, not in the fleet's table)
SECTIONS: tuple[tuple[str, type[BaseModel], str], ...] = (
    ("Agent settings", AgentSettings, "In `agentDefaults`, or on a swarm host or pool, which wins."),
    ("Swarm hosts", SwarmHostConfig, "Each entry of `swarmHosts` (with any agent setting)."),
    ("Swarm pools", SwarmPoolConfig, "Each entry of `swarmPools` (with any agent setting)."),
)
_BOUNDS = ((annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"), (annotated_types.Le, "le", "<="),
           (annotated_types.Lt, "lt", "<"))


def _args(annotation: Any) -> tuple[Any, ...]:
    return typing.get_args(annotation)


def kind(annotation: Any, metadata: list[Any] | tuple[Any, ...] = ()) -> str:
    """A type as the reference names it: a Kind marker's name, else the Python type in words."""
    for item in metadata:
        if isinstance(item, Kind):
            return item.name
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = _args(annotation)
        return kind(base, extra)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(kind(a) for a in _args(annotation) if a is not type(None))
    if origin is list:
        return f"list of {kind(_args(annotation)[0])}"
    if origin is dict:
        return "map"
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in _args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return {bool: "boolean", int: "whole number", float: "number", str: "text"}.get(annotation, str(annotation))


def bounds(info: FieldInfo) -> str:
    found: list[str] = []
    for item in info.metadata:
        for cls, attr, sign in _BOUNDS:
            if isinstance(item, cls):
                limit = getattr(item, attr)
                found.append(f"{sign} {int(limit) if float(limit).is_integer() else limit}")
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            found.append(f"at least {item.min_length}")
        if getattr(item, "pattern", None):
            found.append("form checked")
    return ", ".join(found)


def default(info: FieldInfo) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "default_text" in extra:  # a default the stack reader derives (fleet/config/pulumi_source.py)
        return str(extra["default_text"])
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "see its keys"
    if value is None:
        return "unset"
    return f"`{json.dumps(value)}`"


def rows(model: type[BaseModel], prefix: str, skip: tuple[type[BaseModel], ...] = ()) -> list[str]:
    """One table row per key of MODEL under PREFIX, nested objects key by key."""
    out: list[str] = []
    inherited = {name for base in skip for name in base.model_fields}
    for name, info in model.model_fields.items():
        if name in inherited:
            continue
        key = f"{prefix}{to_camel(name)}"
        nested = info.annotation if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel) \
            else None
        out.append(_row(key, info))
        if nested is not None and nested not in {section[1] for section in SECTIONS}:
            out += rows(nested, f"{key}.")
    return out


def _row(key: str, info: FieldInfo) -> str:
    limits = bounds(info)
    what = kind(info.annotation, info.metadata) + (f" ({limits})" if limits else "")
    meaning = (info.description or "").replace("|", "\\|")
    return f"| `{key}` | {what} | {default(info)} | {meaning} |"


HEADER = "| key | type | default | meaning |\n| --- | --- | --- | --- |\n"


def render_reference() -> str:
    fleet_rows = [r for r in rows(FleetConfig, f"{NAMESPACE}:") if not r.startswith(f"| `{NAMESPACE}:gcp")]
    gcp_rows = [r.replace(f"`{NAMESPACE}:", "`gcp:") for r in rows(GcpSettings, f"{NAMESPACE}:")]
    parts = [
        "# Configuration reference\n\n",
        "GENERATED by `python -m fleet.generators.config_reference` from the models in fleet/config/model.py: do not "
        "edit. tests/test_docs.py fails while this file and the models differ.\n\n",
        "Keys are namespaced as `pulumi config set` writes them; structured values are edited with `--path`, e.g. "
        f"`pulumi config set --path '{NAMESPACE}:swarmHosts[0].targetAgents' 3000`. Unknown keys are errors, each "
        "problem one line naming its key (exit 2). Bounds that come from the VM contract are the ones the VMs "
        "check again on a live change (fleet/vm_contract.py `SWARM_ATTRIBUTES`).\n\n",
        "## Google Cloud (`gcp:`)\n\n", HEADER, *(r + "\n" for r in gcp_rows), "\n",
        f"## The fleet (`{NAMESPACE}:`)\n\n", HEADER, *(r + "\n" for r in fleet_rows),
    ]
    for title, model, intro in SECTIONS:
        base = (AgentSettings,) if model is not AgentSettings else ()
        parts += [f"\n## {title}\n\n{intro}\n\n", HEADER, *(r + "\n" for r in rows(model, "", skip=base))]
    return "".join(parts)


def main() -> int:
    REFERENCE_PATH.parent.mkdir(exist_ok=True)
    REFERENCE_PATH.write_text(render_reference())
    print(f"wrote {REFERENCE_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
