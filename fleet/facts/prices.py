"""Hourly and monthly prices of machine types, from data/prices.yaml (per-family SKU rates per region)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from fleet.facts.machine_types import MachineType
from fleet.facts.tables import Row, table

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
    # Spot: the same rates for Spot VMs, of their own date (they move; disks cost the same)
    spot_date: str = ""
    spot_regions: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)

    def hourly(self, machine: MachineType, region: str, spot: bool = False) -> float | None:
        family = machine.name.split("-", 1)[0]
        rates = (self.spot_regions if spot else self.regions).get(region, {}).get(family)
        if rates is None:
            return None
        return machine.vcpus * rates[0] + machine.memory_mb / 1024 * rates[1]

    def monthly(self, machine: MachineType, region: str, spot: bool = False) -> float | None:
        hourly = self.hourly(machine, region, spot)
        return None if hourly is None else hourly * self.hours_per_month

    def disk_monthly(self, disk_type: str, gb: int, region: str) -> float | None:
        rate = self.disks.get(region, {}).get(disk_type)
        return None if rate is None else rate * gb

    def require_region(self, region: str, spot: bool = False) -> None:
        known = self.spot_regions if spot else self.regions
        if region not in known:
            raise PriceError(f"no {'Spot ' if spot else ''}prices for region {region!r} in {TABLE_NAME} (known: "
                             f"{', '.join(sorted(known)) or 'none'})")


def _rates(regions: Row) -> dict[str, dict[str, tuple[float, float]]]:
    return {region: {family: (float(rates.number("vcpu_hour", whole=False)),
                              float(rates.number("gb_hour", whole=False)))
                     for family, rates in families.rows()}
            for region, families in regions.rows()}


@cache
def price_table() -> PriceTable:
    raw = table(TABLE_NAME)
    regions = _rates(raw.mapping("regions"))
    spot = raw.mapping("spot")
    disks = {region: {kind: float(kinds.number(kind, whole=False)) for kind in map(str, kinds.raw)}
             for region, kinds in raw.mapping("disks").rows()}
    return PriceTable(raw.text("date"), raw.text("currency"), float(raw.number("hours_per_month", whole=False)),
                      regions, disks, spot.text("date"), _rates(spot.mapping("regions")))
