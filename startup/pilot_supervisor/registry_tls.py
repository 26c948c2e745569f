"""The rendezvous' side of registry TLS: before every start of its unit, the certificate from the instance attributes
and its private key from Secret Manager, written where only the rendezvous' user reads them, in memory (/run), never
on a disk; and a watcher that restarts the unit when the two attributes change (a rotation, or TLS turned on or off).

The key is read with the VM's service account (a token from the metadata server); only that account may read the
secret (the program's IAM). Every bad answer is one line naming what was asked and what came back."""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pilot_supervisor.attributes import MetadataError, check, fetch_attributes
from pilot_supervisor.contract import key
from pilot_supervisor.journal import log

# Secret Manager's REST API; a test bed serves its `access` call from a stand-in (the startup script's seam)
SECRET_MANAGER_URL = "https://secretmanager.googleapis.com/v1"
# a secret payload is at most 64 KiB; the answer (JSON, base64) is well under this
MAX_ANSWER_BYTES = 1 << 18
CERT_FILE, KEY_FILE, ENV_FILE = "cert.pem", "key.pem", "tls.env"
# what the unit's ExecStart expands: the rendezvous' TLS flags, or nothing (plaintext)
FLAGS_VARIABLE = "PILOT_REGISTRY_TLS_FLAGS"
FIELDS = ("registry_tls_cert", "registry_key_secret")


class RegistryTlsError(ValueError):
    """The rendezvous must not start: the message says which value and why."""


def _get(url: str, headers: dict[str, str], what: str) -> Any:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            raw = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = exc.read(2000).decode(errors="replace").strip().replace("\n", " ")[:300]
        raise RegistryTlsError(f"{what}: HTTP {exc.code} {detail}") from None
    except (OSError, ValueError) as exc:
        raise RegistryTlsError(f"{what}: {exc}") from None
    if len(raw) > MAX_ANSWER_BYTES:
        raise RegistryTlsError(f"{what}: the answer is over {MAX_ANSWER_BYTES} bytes")
    try:
        return json.loads(raw)
    except ValueError:
        raise RegistryTlsError(f"{what}: the answer is not JSON") from None


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def access_secret(metadata_url: str, secret_manager_url: str, version: str) -> bytes:
    """The payload of a Secret Manager secret VERSION (projects/P/secrets/S/versions/N), read as this VM's service
    account; its CRC32C checked when the answer carries one."""
    token = _get(f"{metadata_url.rstrip('/')}/instance/service-accounts/default/token",
                 {"Metadata-Flavor": "Google"}, "the metadata server's access token")
    if not isinstance(token, dict) or not isinstance(token.get("access_token"), str):
        raise RegistryTlsError("the metadata server's access token: no access_token in the answer")
    what = f"Secret Manager {version}"
    answer = _get(f"{secret_manager_url.rstrip('/')}/{version}:access",
                  {"Authorization": f"Bearer {token['access_token']}"}, what)
    payload = answer.get("payload") if isinstance(answer, dict) else None
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), str):
        raise RegistryTlsError(f"{what}: no payload.data in the answer")
    try:
        data = base64.b64decode(payload["data"], validate=True)
    except ValueError:
        raise RegistryTlsError(f"{what}: payload.data is not base64") from None
    crc = payload.get("dataCrc32c")
    if crc is not None and str(crc) != str(crc32c(data)):
        raise RegistryTlsError(f"{what}: the payload's CRC32C does not match (damaged in transit)")
    return data


def certificate_pem(attribute: str) -> str:
    der = base64.b64decode(attribute)
    body = base64.b64encode(der).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def _write(directory: Path, name: str, data: bytes, owner: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o400)
    if owner:
        shutil.chown(tmp, owner, owner)
    os.replace(tmp, directory / name)


def prepare(metadata_url: str, secret_manager_url: str, directory: Path, owner: str) -> str:
    """Write DIRECTORY's certificate, key and flags for the unit from this VM's attributes now (the flags empty and
    the files gone without TLS); the key is checked against the certificate before the rendezvous sees them."""
    values = check("rendezvous", fetch_attributes(metadata_url)[0])
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if owner:
        shutil.chown(directory, owner, owner)
    if not values["registry_tls_cert"]:
        for name in (CERT_FILE, KEY_FILE):
            (directory / name).unlink(missing_ok=True)
        _write(directory, ENV_FILE, f"{FLAGS_VARIABLE}=\n".encode(), "")
        return "registry TLS: off (plaintext)"
    private = access_secret(metadata_url, secret_manager_url, values["registry_key_secret"])
    if b"PRIVATE KEY-----" not in private:
        raise RegistryTlsError(f"Secret Manager {values['registry_key_secret']}: the payload is not a PEM private key")
    cert = certificate_pem(values["registry_tls_cert"]).encode()
    _write(directory, CERT_FILE, cert, owner)
    _write(directory, KEY_FILE, private, owner)
    try:  # the pair the registry will load: a key of another certificate is refused here, in words
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(directory / CERT_FILE,
                                                                           directory / KEY_FILE)
    except ssl.SSLError as exc:
        (directory / KEY_FILE).unlink(missing_ok=True)
        raise RegistryTlsError(f"the key in {values['registry_key_secret']} is not the key of "
                               f"{key('REGISTRY_TLS_CERT')} ({exc.reason or exc})") from None
    flags = f"-tls -tls-cert {directory / CERT_FILE} -tls-key {directory / KEY_FILE}"
    _write(directory, ENV_FILE, f"{FLAGS_VARIABLE}={flags}\n".encode(), "")
    return f"registry TLS: on, key from {values['registry_key_secret']}"


def watch(metadata_url: str, unit: str, wait_seconds: int = 300) -> None:
    """Restart UNIT whenever the certificate or its key's secret version changes in the attributes (the unit reads
    them again at its start); a failed request is retried with backoff, never the end of the watch."""
    seen: tuple[str, ...] | None = None
    etag, delay, last = "", 1.0, 0.0
    while True:
        time.sleep(max(0.0, last + 0.5 - time.monotonic()))  # at most two requests a second, whatever answers
        last = time.monotonic()
        try:
            attributes, etag = fetch_attributes(metadata_url, etag, wait_seconds if etag else 0)
            delay = 1.0
        except (OSError, ValueError, MetadataError) as exc:
            log("registry-tls-watch-failed", error=f"{type(exc).__name__}: {exc}", retry_in_seconds=delay)
            time.sleep(delay)
            delay, etag = min(delay * 2, 60.0), ""
            continue
        try:
            values = check("rendezvous", attributes)
        except ValueError as exc:  # the unit's own start refuses them too, in the same words
            log("registry-tls-refused", error=str(exc))
            continue
        now = tuple(str(values[f]) for f in FIELDS)
        if seen is not None and now != seen:
            log("registry-tls-changed", restarting=unit, secret=now[1] or "(plaintext)")
            subprocess.run(["systemctl", "try-restart", unit], check=False)
        seen = now
