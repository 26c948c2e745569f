"""Reads a Pulumi project directory the way the Pulumi CLI does: Pulumi.yaml and Pulumi.<stack>.yaml."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleet.config.pulumi_source import SECRET_PLACEHOLDER
from fleet.plan import yaml12
from fleet.plan.yaml12 import StackFileError


class ProjectError(Exception):
    """The project directory or stack file cannot be planned; the message says which file and why."""


@dataclass
class PulumiProject:
    directory: Path
    name: str
    main: Path
    config: dict[str, str] = field(default_factory=dict)
    secret_keys: list[str] = field(default_factory=list)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml12.load(path.read_text()) or {}
    except UnicodeDecodeError:
        raise ProjectError(f"{path}: not UTF-8 text") from None
    except StackFileError as exc:
        raise ProjectError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ProjectError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise ProjectError(f"{path}: expected a mapping at the top level")
    return data


def wire_value(value: Any) -> str:
    """Pulumi hands every config value to a program as a string; structured values are JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def available_stacks(directory: Path) -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in directory.glob("Pulumi.*.yaml"))


def load_project(directory: Path, stack: str) -> PulumiProject:
    directory = directory.resolve()
    project_file = directory / "Pulumi.yaml"
    if not project_file.is_file():
        raise ProjectError(f"{directory}: no Pulumi.yaml (not a Pulumi project directory)")
    project = _read_yaml(project_file)
    name = project.get("name")
    if not isinstance(name, str) or not name:
        raise ProjectError(f"{project_file}: missing 'name'")
    runtime = project.get("runtime")
    runtime_name = runtime.get("name") if isinstance(runtime, dict) else runtime
    if runtime_name != "python":
        raise ProjectError(f"{project_file}: runtime is {runtime_name!r}; the offline plan runs Python programs only")
    main = directory / str(project.get("main") or ".")
    main = main / "__main__.py" if main.is_dir() else main
    if not main.is_file():
        raise ProjectError(f"{directory}: no program entry point {main.name}")

    result = PulumiProject(directory=directory, name=name, main=main)

    def qualified(key: object, where: Path) -> str:
        if not isinstance(key, str):  # YAML reads `5:` or `null:` as a number or nothing, never as a key
            raise ProjectError(f"{where}: config key {key!r} is not text (quote it if it is meant as a key)")
        return key if ":" in key else f"{name}:{key}"

    # Project-level defaults first (Pulumi.yaml `config: {key: {default: ...}}`), then the stack file.
    for key, spec in (project.get("config") or {}).items():
        if isinstance(spec, dict) and ("default" in spec or "value" in spec):
            result.config[qualified(key, project_file)] = wire_value(spec.get("value", spec.get("default")))
    stack_file = directory / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        known = ", ".join(available_stacks(directory)) or "none"
        raise ProjectError(f"{directory}: no stack file Pulumi.{stack}.yaml (stacks here: {known})")
    stack_config = _read_yaml(stack_file).get("config") or {}
    if not isinstance(stack_config, dict):
        raise ProjectError(f"{stack_file}: 'config' must be a mapping")
    for key, value in stack_config.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            # Offline there is no secrets provider to decrypt with: the program sees a placeholder.
            result.config[qualified(key, stack_file)] = SECRET_PLACEHOLDER
            result.secret_keys.append(qualified(key, stack_file))
        else:
            result.config[qualified(key, stack_file)] = wire_value(value)
    return result
