"""Hourly and monthly prices of machine types, from data/prices.yaml (per-family SKU rates per region)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from fleet.facts.machine_types import MachineType
from fleet.facts.tables import table

TABLE_NAME = "prices.yaml"


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
            raise PriceError(f"no prices for region {region!r} in {TABLE_NAME} (known: "
                             f"{', '.join(sorted(self.regions))})")


@cache
def price_table() -> PriceTable:
    raw = table(TABLE_NAME)
    regions = {region: {family: (float(rates.number("vcpu_hour", whole=False)),
                                 float(rates.number("gb_hour", whole=False)))
                        for family, rates in families.rows()}
               for region, families in raw.mapping("regions").rows()}
    disks = {region: {kind: float(kinds.number(kind, whole=False)) for kind in map(str, kinds.raw)}
             for region, kinds in raw.mapping("disks").rows()}
    return PriceTable(raw.text("date"), raw.text("currency"), float(raw.number("hours_per_month", whole=False)),
                      regions, disks)
