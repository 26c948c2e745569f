"""The machine-type table: vCPUs and memory of each Compute Engine type, read from data/machine_types.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

TABLE_PATH = Path(__file__).with_name("data") / "machine_types.yaml"


@dataclass(frozen=True)
class MachineType:
    name: str
    vcpus: int
    memory_mb: int


@cache
def machine_types() -> dict[str, MachineType]:
    raw = yaml.safe_load(TABLE_PATH.read_text())["machine_types"]
    return {name: MachineType(name, int(row["vcpus"]), int(row["memory_mb"])) for name, row in raw.items()}


def lookup(name: str) -> MachineType | None:
    return machine_types().get(name)
