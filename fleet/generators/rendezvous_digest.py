"""The content digest of a rendezvous source archive (`python -m fleet rendezvous-digest ARCHIVE`): what
fleet/facts/data/rendezvous_build.yaml pins as `tree_sha256`, and what the startup script computes of the archive it
downloads (find/sort/sha256sum, startup/rendezvous.sh) before anything is built."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path, PurePosixPath


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
