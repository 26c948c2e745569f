"""The Compute Engine API as `fleet verify` calls it: one session, one token and one base URL for every request of
a check (guest attributes, group listings, instance metadata, the script audit), and one way of saying what went
wrong."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from fleet.verify import bounded

COMPUTE_API = "https://compute.googleapis.com/compute/v1"
# Seams for a local stand-in of the API (tests) or a proxy: both honoured only when set.
API_ENV = "PILOT_FLEET_COMPUTE_API"
TOKEN_ENV = "PILOT_FLEET_ACCESS_TOKEN"
SCOPE = "https://www.googleapis.com/auth/compute.readonly"


class NoCredentialsError(Exception):
    pass


def access_token() -> str:
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token
    try:
        import google.auth
        import google.auth.transport.requests
        from google.auth.exceptions import GoogleAuthError
    except ImportError as exc:
        raise NoCredentialsError(f"google-auth is not installed ({exc})") from None
    try:
        credentials, _ = google.auth.default(scopes=[SCOPE])
        credentials.refresh(google.auth.transport.requests.Request())
    except GoogleAuthError as exc:
        raise NoCredentialsError(str(exc).splitlines()[0]) from None
    return str(credentials.token)


# A listing of more pages than this is not the fleet's (the API's pages hold 500 items): it is cut off and said.
MAX_PAGES = 100


@dataclass(frozen=True)
class ComputeApi:
    """The API within one check: each request bounded by `timeout` and by the check's one `deadline`
    (time.monotonic), body included; answers capped in size and read as strict JSON objects."""

    session: requests.Session
    base: str
    token: str
    timeout: float = 10.0
    deadline: float = math.inf

    def call(self, path: str, params: Mapping[str, str] | None = None, method: str = "GET") -> dict[str, Any] | str:
        """The JSON object the API answers at PATH (below its base), or what went wrong: "unreachable: <error>",
        "HTTP <status>", "no answer by the check's deadline" or "an unexpected document (<why>)"."""
        until = min(time.monotonic() + self.timeout, self.deadline)
        if until <= time.monotonic():
            return "no answer by the check's deadline"
        try:
            status, body = bounded.fetch(self.session, f"{self.base}/{path}", until, method=method, params=params,
                                         headers={"Authorization": f"Bearer {self.token}"})
        except requests.Timeout:
            return "no answer by the check's deadline" if until == self.deadline else "unreachable: Timeout"
        except requests.RequestException as exc:
            return f"unreachable: {type(exc).__name__}"
        except (bounded.TooLargeError, bounded.RedirectRefusedError) as exc:
            return f"an unexpected document ({exc})"
        if status != 200:
            return f"HTTP {status}"
        try:
            doc = bounded.loads(body)
        except (ValueError, RecursionError) as exc:
            return f"an unexpected document ({str(exc)[:80] or type(exc).__name__})"
        return doc if isinstance(doc, dict) else "an unexpected document (not an object)"

    def pages(self, path: str, params: Mapping[str, str] | None = None,
              method: str = "GET") -> Iterator[dict[str, Any] | str]:
        """Every page of a listing, each a document or what went wrong (then the listing ends): at most MAX_PAGES,
        and a page token the API gave before ends it too (a listing that never ends is said, not followed)."""
        params, seen = dict(params or {}), set()
        for _ in range(MAX_PAGES):
            doc = self.call(path, params, method)
            yield doc
            if isinstance(doc, str):
                return
            token = doc.get("nextPageToken")
            if not token:
                return
            if not isinstance(token, str) or token in seen:
                yield "an unexpected document (a page token it gave before)"
                return
            seen.add(token)
            params = {**params, "pageToken": token}
        yield f"an unexpected document (more than {MAX_PAGES} pages)"


def failure(method: str, said: str) -> str:
    """What a failed call answered, as a report says it."""
    return f"Compute Engine API {said}" if said.startswith("unreachable") else f"{method} answered {said}"


def metadata_items(block: Any) -> dict[str, str] | None:
    """key -> value of a metadata block (an instance's lists {key, value} items, instanceSettings' is a map); None
    when the block is not one."""
    items = block.get("items", []) if isinstance(block, Mapping) else None
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    if isinstance(items, list) and all(isinstance(i, Mapping) and "key" in i for i in items):
        return {str(i["key"]): str(i.get("value", "")) for i in items}
    return None


@contextmanager
def connected(timeout: float = 10.0, deadline: float = math.inf) -> Iterator[ComputeApi]:
    """The API with this machine's credentials, within the check's DEADLINE (time.monotonic). Raises
    NoCredentialsError when there are none at all."""
    token = access_token()
    with requests.Session() as session:
        yield ComputeApi(session, os.environ.get(API_ENV, COMPUTE_API).rstrip("/"), token, timeout, deadline)
