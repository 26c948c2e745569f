"""What `fleet verify` asks of every server it reads (the rendezvous' stats, the Compute Engine API): one deadline for
the whole answer, body included, a size cap, redirects only where they are allowed, and JSON without duplicate keys.
Neither server is trusted: a drip, an endless body, a gzip bomb or a document built to confuse is one line."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import requests

# The largest answer read, decompressed: the real /api/stats lists every node (about 5 MB at 50,000 agents, measured),
# so this leaves room for six times that and none for a body that would fill memory (a gzip bomb, an endless one).
MAX_BODY_BYTES = 32 << 20
# Redirects followed, and only to the same scheme, host and port (a redirect to 169.254.169.254 would make verify
# ask the metadata server of the machine it runs on).
MAX_REDIRECTS = 3


class TooLargeError(Exception):
    """The answer passed MAX_BODY_BYTES (decompressed)."""


class RedirectRefusedError(Exception):
    """A redirect to another origin, or one too many; the message says which."""


def origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def fetch(session: requests.Session, url: str, until: float, *, method: str = "GET",
          params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
          redirects: int = 0) -> tuple[int, bytes]:
    """(status, body) of one request, whole by UNTIL (time.monotonic): a server that drips its body is cut off there,
    as one that stalls is (requests.Timeout). The read runs in a thread of its own that the deadline abandons (a
    socket's timeout is per read, and a drip never lets one expire); the process does not wait for it. At most
    REDIRECTS redirects are followed, each to the same origin; with none, a redirect is its status."""
    outcome: list[tuple[int, bytes] | BaseException] = []

    def read() -> None:
        try:
            outcome.append(_read(session, url, until, method, params, headers, redirects))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as it is
            outcome.append(exc)

    worker = threading.Thread(target=read, daemon=True, name="bounded-fetch")
    worker.start()
    worker.join(max(0.0, until - time.monotonic()))
    if not outcome:
        raise requests.Timeout("the answer did not arrive whole by the deadline")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _read(session: requests.Session, url: str, until: float, method: str, params: Mapping[str, str] | None,
          headers: Mapping[str, str] | None, redirects: int) -> tuple[int, bytes]:
    first = url
    for _ in range(redirects + 1):
        left = until - time.monotonic()
        if left <= 0:
            raise requests.Timeout("no answer by the deadline")
        with session.request(method, url, params=params, headers=dict(headers or {}), timeout=(min(3.0, left), left),
                             allow_redirects=False, stream=True) as response:
            if response.is_redirect and redirects:
                target = urllib.parse.urljoin(url, response.headers.get("Location", ""))
                if origin(target) != origin(first):
                    raise RedirectRefusedError(f"redirected to another host ({origin(target)}): not followed")
                url = target
                continue
            body = bytearray()
            for chunk in response.iter_content(64 * 1024):  # decompressed as it arrives
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise TooLargeError(f"answered more than {MAX_BODY_BYTES >> 20} MiB (decompressed)")
                if time.monotonic() > until:
                    raise requests.Timeout("the body did not arrive by the deadline")
            return response.status_code, bytes(body)
    raise RedirectRefusedError(f"more than {redirects} redirects")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:  # read last-wins, a second key could override what a reader checked in the first
            raise ValueError(f"duplicate key {key[:60]!r}")
        out[key] = value
    return out


def loads(body: bytes) -> Any:
    """JSON as verify reads it: UTF-8, no duplicate key in any object. Raises UnicodeDecodeError, ValueError (bad
    JSON, a duplicate key, a number past Python's digit limit) or RecursionError (nesting past its depth)."""
    return json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates)
