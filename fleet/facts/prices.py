"""Hourly and monthly prices of machine types, from data/prices.yaml (per-family SKU rates per region)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from fleet.facts.machine_types import MachineType

TABLE_PATH = Path(__file__).with_name("data") / "prices.yaml"


class PriceError(Exception):
    pass


@dataclass(frozen=True)
class PriceTable:
    date: str
    currency: str
    hours_per_month: float
    regions: dict[str, dict[str, tuple[float, float]]]  # region -> family -> (vcpu_hour, gb_hour)
    disks: dict[str, dict[str, float]]  # region -> disk type -> $ per GB-month

    def hourly(self, machine: MachineType, region: str) -> float | None:
        family = machine.name.split("-", 1)[0]
        rates = self.regions.get(region, {}).get(family)
        if rates is None:
            return None
        return machine.vcpus * rates[0] + machine.memory_mb / 1024 * rates[1]

    def monthly(self, machine: MachineType, region: str) -> float | None:
        hourly = self.hourly(machine, region)
        return None if hourly is None else hourly * self.hours_per_month

    def disk_monthly(self, disk_type: str, gb: int, region: str) -> float | None:
        rate = self.disks.get(region, {}).get(disk_type)
        return None if rate is None else rate * gb

    def require_region(self, region: str) -> None:
        if region not in self.regions:
            raise PriceError(f"no prices for region {region!r} in {TABLE_PATH.name} (known: "
                             f"{', '.join(sorted(self.regions))})")


@cache
def price_table() -> PriceTable:
    raw: dict[str, Any] = yaml.safe_load(TABLE_PATH.read_text())
    regions = {region: {family: (float(r["vcpu_hour"]), float(r["gb_hour"])) for family, r in families.items()}
               for region, families in raw["regions"].items()}
    disks = {region: {kind: float(rate) for kind, rate in kinds.items()} for region, kinds in raw["disks"].items()}
    return PriceTable(str(raw["date"]), str(raw["currency"]), float(raw["hours_per_month"]), regions, disks)
