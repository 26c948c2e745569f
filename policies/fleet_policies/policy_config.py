"""Policy config: each policy's keys, types and defaults stated once, as its schema and as its fallbacks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import PolicyConfigSchema

# key -> (JSON schema type, default)
ConfigSpec = Mapping[str, tuple[str, Any]]


def config_schema(spec: ConfigSpec) -> PolicyConfigSchema:
    properties: dict[str, dict[str, Any]] = {}
    for key, (json_type, default) in spec.items():
        properties[key] = {"type": json_type, "default": default}
        if json_type == "array":
            properties[key]["items"] = {"type": "string"}
    return PolicyConfigSchema(properties=properties)


def config_for(given: Mapping[str, Any] | None, spec: ConfigSpec) -> dict[str, Any]:
    """The config a rule runs with: what the engine passed, the spec's defaults for the rest."""
    return {**{key: default for key, (_type, default) in spec.items()}, **(given or {})}
