"""The machine-type table: vCPUs and memory of each Compute Engine type, read from data/machine_types.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from fleet.facts.tables import table


@dataclass(frozen=True)
class MachineType:
    name: str
    vcpus: int
    memory_mb: int


@cache
def machine_types() -> dict[str, MachineType]:
    return {name: MachineType(name, row.number("vcpus"), row.number("memory_mb"))
            for name, row in table("machine_types.yaml").mapping("machine_types").rows()}


def lookup(name: str) -> MachineType | None:
    return machine_types().get(name)
