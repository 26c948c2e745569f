"""`rendezvous-digest`: the content digest of a source archive, to pin a new commit in rendezvous_build.yaml."""

from __future__ import annotations

import argparse
from pathlib import Path

from fleet.commands import EXIT_OK, fail


def cmd_rendezvous_digest(args: argparse.Namespace) -> int:
    from fleet.generators.rendezvous_digest import ArchiveError, tree_digest

    try:
        print(tree_digest(Path(args.archive)))
    except ArchiveError as exc:
        return fail(str(exc))
    return EXIT_OK
