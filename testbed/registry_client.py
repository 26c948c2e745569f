"""The registry's own wire protocol, spoken from Python for tests and benches: a 4-byte big-endian length, then a
JSON object (pkg/registry/server.go, readMessage/writeMessage). Each client may take its own source address in
127.0.0.0/8, so the registry's rate limit (keyed by the peer's IP) does not bind a load from one machine."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any


class RegistryRefusedError(Exception):
    """The registry answered with an error (e.g. a rate-limited registration)."""


def fresh_key() -> str:
    """A new identity's public key as the registry takes it: 32 bytes (Ed25519), standard base64."""
    return base64.b64encode(os.urandom(32)).decode()


def send(registry: str, message: dict[str, Any], source: str = "", timeout: float = 5.0) -> dict[str, Any]:
    """One request on its own connection, from SOURCE (an address of this machine) when given."""
    host, port = registry.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        if source:
            sock.bind((source, 0))
        sock.connect((host, int(port)))
        body = json.dumps(message).encode()
        sock.sendall(struct.pack(">I", len(body)) + body)
        header = _read(sock, 4)
        answer = json.loads(_read(sock, struct.unpack(">I", header)[0]))
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        raise RegistryRefusedError(answer["error"])
    return dict(answer)


def register(registry: str, public_key: str, listen_port: int, source: str = "") -> dict[str, Any]:
    return send(registry, {"type": "register", "listen_addr": f":{listen_port}", "public_key": public_key}, source)


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the registry closed the connection")
        data += chunk
    return data
