"""Which zones each Compute Engine region has, read from data/zones.yaml (config checks every zone against it)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

TABLE_PATH = Path(__file__).with_name("data") / "zones.yaml"


@cache
def zones_by_region() -> dict[str, tuple[str, ...]]:
    raw = yaml.safe_load(TABLE_PATH.read_text())
    return {str(region): tuple(str(z) for z in zones) for region, zones in raw.items()}
