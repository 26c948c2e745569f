"""The Compute Engine API as `fleet verify` calls it: one session, one token and one base URL for every request of
a check (guest attributes, group listings, instance metadata, the script audit), and one way of saying what went
wrong."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

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


@dataclass(frozen=True)
class ComputeApi:
    session: requests.Session
    base: str
    token: str
    timeout: float = 10.0

    def call(self, path: str, params: Mapping[str, str] | None = None, method: str = "GET") -> dict[str, Any] | str:
        """The JSON object the API answers at PATH (below its base), or what went wrong: "unreachable: <error>",
        "HTTP <status>" or "an unexpected document"."""
        try:
            response = self.session.request(method, f"{self.base}/{path}", params=params, timeout=self.timeout,
                                            headers={"Authorization": f"Bearer {self.token}"})
        except requests.RequestException as exc:
            return f"unreachable: {type(exc).__name__}"
        if response.status_code != 200:
            return f"HTTP {response.status_code}"
        try:
            doc = response.json()
        except ValueError:
            return "an unexpected document"
        return doc if isinstance(doc, dict) else "an unexpected document"


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
def connected(timeout: float = 10.0) -> Iterator[ComputeApi]:
    """The API with this machine's credentials. Raises NoCredentialsError when there are none at all."""
    token = access_token()
    with requests.Session() as session:
        yield ComputeApi(session, os.environ.get(API_ENV, COMPUTE_API).rstrip("/"), token, timeout)
