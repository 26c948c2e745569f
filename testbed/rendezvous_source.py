"""The pinned rendezvous source for the tests, got the way a rendezvous VM gets it: the pinned URL of
fleet/facts/data/rendezvous_build.yaml, checked against its content digest (`tree_sha256`) before anything uses it.

`python -m testbed.rendezvous_source [OFFLINE_DIR ...]` (scripts/dev.sh runs it before the tests) makes sure
`.cache/sources/<commit>.tar.gz` holds it: a cached copy whose digest matches, else an archive with the pinned
content in one of the offline directories (a mirror of archives kept beside the checkout; any file name), else a
download of the pinned URL. Where none of them works it prints one line naming what it could not get and exits 2,
before anything else runs. The boot tests serve this archive to the rendezvous VM, and the rendezvous tests build it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from fleet.facts.rendezvous_build import Source, build_table
from fleet.generators.rendezvous_digest import ArchiveError, tree_digest

REPO = Path(__file__).resolve().parent.parent
SOURCE_CACHE = REPO / ".cache" / "sources"
DOWNLOAD_TIMEOUT_SECONDS = 20  # per connection attempt and read; a machine without GitHub fails at once or by then
DOWNLOAD_LIMIT_BYTES = 64 * 1024 * 1024  # the pinned archive is about 1 MB


class SourceUnavailableError(Exception):
    """The pinned source is nowhere to be had; the message says what was tried."""


def pinned_source() -> Source:
    table = build_table()
    return table.sources[table.default_source]


def archive_path(source: Source | None = None, cache: Path = SOURCE_CACHE) -> Path:
    """Where the tests find the pinned source archive (scripts/dev.sh puts it there)."""
    return cache / f"{(source or pinned_source()).commit}.tar.gz"


def require_archive() -> Path:
    """The cached archive, or a FileNotFoundError that says how to get it."""
    path = archive_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path.relative_to(REPO)}: the pinned rendezvous source is not there; "
                                "`bash scripts/dev.sh test` fetches it (python -m testbed.rendezvous_source)")
    return path


def _matches(path: Path, source: Source) -> bool:
    try:
        return tree_digest(path) == source.tree_sha256
    except (ArchiveError, OSError):
        return False


def _download(source: Source, into: Path) -> str | None:
    """Download the pinned URL into INTO; None, or why it failed."""
    try:
        with urllib.request.urlopen(source.url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as answer, into.open("wb") as out:
            got = 0
            while chunk := answer.read(1 << 16):
                got += len(chunk)
                if got > DOWNLOAD_LIMIT_BYTES:
                    return f"more than {DOWNLOAD_LIMIT_BYTES} bytes"
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))
    return None


def ensure(offline_dirs: list[Path], source: Source | None = None, cache: Path = SOURCE_CACHE) -> Path:
    """SOURCE's archive (default: the pinned one) in CACHE: already there, copied from an offline directory, or
    downloaded; SourceUnavailableError where none of them has its content."""
    source = source or pinned_source()
    target = archive_path(source, cache)
    if target.is_file() and _matches(target, source):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    for directory in offline_dirs:
        for candidate in sorted(directory.glob("*.tar.gz")) if directory.is_dir() else ():
            if _matches(candidate, source):
                shutil.copyfile(candidate, target)
                return target
    with tempfile.NamedTemporaryFile(dir=cache, suffix=".part", delete=False) as part:
        partial = Path(part.name)
    try:
        failure = _download(source, partial)
        if failure is None and not _matches(partial, source):
            failure = f"its content digest is not the pinned tree_sha256 {source.tree_sha256}"
        if failure is not None:
            looked = ", ".join(str(d) for d in offline_dirs) or "none given"
            raise SourceUnavailableError(
                f"cannot get the pinned rendezvous source {source.short}: {source.url}: {failure}; no archive with "
                f"its content in the offline directories ({looked})")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def main(argv: list[str]) -> int:
    try:
        path = ensure([Path(arg) for arg in argv], pinned_source(), SOURCE_CACHE)
    except SourceUnavailableError as exc:
        print(f"testbed.rendezvous_source: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
