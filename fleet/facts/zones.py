"""Which zones each Compute Engine region has, read from data/zones.yaml (config checks every zone against it)."""

from __future__ import annotations

from functools import cache

from fleet.facts.tables import table


@cache
def zones_by_region() -> dict[str, tuple[str, ...]]:
    return dict(table("zones.yaml").lists())
