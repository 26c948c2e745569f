"""How the tests get the pinned rendezvous source (testbed/rendezvous_source.py, run by scripts/dev.sh): the way the
rendezvous VM gets it, the pinned URL with the content digest checked, over real HTTP on loopback; an offline
directory of archives when one has the pinned content; one line and exit 2 when neither works."""

from __future__ import annotations

import dataclasses
import io
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fleet.facts.rendezvous_build import Source
from fleet.generators.rendezvous_digest import tree_digest
from testbed import rendezvous_source
from testbed.rendezvous_source import SourceUnavailableError, ensure, pinned_source


def _archive(path: Path, body: bytes = b"package main\n") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("src-1/cmd/rendezvous/main.go", body), ("src-1/go.mod", b"module x\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@contextmanager
def _serving(payload: bytes) -> Iterator[str]:
    """A real HTTP server on loopback that answers every GET with PAYLOAD; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/archive.tar.gz"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def pin(tmp_path: Path) -> tuple[Path, Source]:
    archive = _archive(tmp_path / "upstream.tar.gz")
    return archive, dataclasses.replace(pinned_source(), tree_sha256=tree_digest(archive))


def test_the_source_is_downloaded_from_its_url_and_checked(tmp_path: Path, pin) -> None:
    archive, source = pin
    with _serving(archive.read_bytes()) as url:
        got = ensure([], dataclasses.replace(source, url=url), tmp_path / "cache")
    assert got == tmp_path / "cache" / f"{source.commit}.tar.gz" and tree_digest(got) == source.tree_sha256
    # a second run takes the cached copy without asking anyone
    assert ensure([], dataclasses.replace(source, url="http://127.0.0.1:9/nothing"), tmp_path / "cache") == got


def test_a_download_with_other_content_is_refused_and_nothing_is_kept(tmp_path: Path, pin) -> None:
    _, source = pin
    other = _archive(tmp_path / "other.tar.gz", b"package main // changed\n")
    with _serving(other.read_bytes()) as url, pytest.raises(SourceUnavailableError, match="content digest is not"):
        ensure([], dataclasses.replace(source, url=url), tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_offline_directory_with_the_pinned_content_is_taken_by_content_not_name(tmp_path: Path, pin) -> None:
    archive, source = pin
    offline = tmp_path / "offline"
    offline.mkdir()
    _archive(offline / "a-decoy.tar.gz", b"package decoy\n")
    (offline / "any-name.tar.gz").write_bytes(archive.read_bytes())
    got = ensure([tmp_path / "absent", offline], dataclasses.replace(source, url="http://127.0.0.1:9/x"),
                 tmp_path / "cache")
    assert got.read_bytes() == archive.read_bytes()


def test_nowhere_to_get_it_is_one_line_and_exit_2(tmp_path: Path, pin, monkeypatch, capsys) -> None:
    _, source = pin
    unreachable = dataclasses.replace(source, url="http://127.0.0.1:9/archive.tar.gz")  # discard port: refused
    monkeypatch.setattr(rendezvous_source, "pinned_source", lambda: unreachable)
    monkeypatch.setattr(rendezvous_source, "SOURCE_CACHE", tmp_path / "cache")
    assert rendezvous_source.main([str(tmp_path / "no-cache-here")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("testbed.rendezvous_source: cannot get the pinned rendezvous "
                                                   f"source {source.short}: {unreachable.url}: ")
    assert f"no archive with its content in the offline directories ({tmp_path / 'no-cache-here'})" in err
