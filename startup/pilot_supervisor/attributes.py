"""A VM's `pilot-*` attributes, read from the metadata server and checked against the rendered contract: the boot
path of both roles and every later live change of a swarm host go through `check`, so what boots is what
converges. Values are read as the startup script reads them (surrounding whitespace dropped)."""

from __future__ import annotations

import http.client
import json
import platform
import re
import urllib.error
import urllib.request
from typing import Any

from pilot_supervisor.contract import attributes as rules
from pilot_supervisor.contract import contract, key

FLAG = re.compile(r"^-[a-z][a-z0-9-]*$")


# Compute Engine's metadata is at most 512 KB: an answer larger than this is not the metadata server's.
MAX_ANSWER_BYTES = 1 << 20


class AttributesError(ValueError):
    """Attributes this VM will not run with; the message names the attribute."""


class MetadataError(ValueError):
    """An answer of the metadata server that cannot be used (too large, not an object)."""


def _raw(attributes: dict[str, str], name: str) -> str | None:
    """The value under a key's name, or under its old name for the one release a rename is read both ways."""
    if name in attributes:
        return attributes[name]
    old = contract()["renamed"].get(name)
    return attributes.get(old) if old else None


def _value(attributes: dict[str, str], rule: dict[str, Any]) -> Any:
    name, kind = rule["key"], rule["kind"]
    raw = _raw(attributes, name)
    if raw is None:
        if rule["default"] is None:
            raise AttributesError(f"instance attribute {name} is missing")
        return int(rule["default"]) if kind == "whole" else rule["default"]
    if kind == "text":
        if not re.fullmatch(rule["pattern"], raw):
            raise AttributesError(f"instance attribute {name}='{raw}' is not {rule['what']}")
        return raw
    if not re.fullmatch(r"[0-9]+" if kind == "whole" else r"[0-9]+(\.[0-9]+)?", raw):
        raise AttributesError(f"instance attribute {name}='{raw}' is not "
                              f"{'a whole number' if kind == 'whole' else 'a number'}")
    value = float(raw)
    low, high, low_open = rule["low"], rule["high"], rule["low_open"]
    if value > high or value < low or (low_open and value == low):
        span = f"{'above ' if low_open else ''}{low:g}..{high:g}"
        raise AttributesError(f"instance attribute {name}={raw} is outside {span} ({rule['why']})")
    return int(value) if kind == "whole" else value


def check(role: str, attributes: dict[str, str]) -> dict[str, Any]:
    """Every attribute of ROLE (empty: the VM's own role), checked and typed, by the contract's field names, with
    `role` first."""
    attributes = {k: v.strip() for k, v in attributes.items()}
    found = attributes.get(key("ROLE"))
    if found is None:
        raise AttributesError(f"instance attribute {key('ROLE')} is missing")
    if found not in contract()["roles"]:
        raise AttributesError(f"unknown {key('ROLE')} '{found}' (expected {' or '.join(contract()['roles'])})")
    if role and found != role:
        raise AttributesError(f"instance attribute {key('ROLE')}='{found}' is not {role}")
    role = found
    out: dict[str, Any] = {"role": role}
    out.update((field, _value(attributes, rule)) for field, rule in rules(role).items())
    if role == "swarm":
        last = out["base_udp_port"] + out["target_agents"] - 1
        if last > 65535:
            raise AttributesError(f"agent ports {out['base_udp_port']}-{last} run past 65535 "
                                  f"({key('BASE_UDP_PORT')} + {key('TARGET_AGENTS')})")
        if out["target_agents"] > out["max_target_agents"]:
            raise AttributesError(f"instance attribute {key('TARGET_AGENTS')}={out['target_agents']} is above "
                                  f"{key('MAX_TARGET_AGENTS')}={out['max_target_agents']} (the memory budget of "
                                  "this VM's machine type, as the plan computed it)")
    else:
        for name, why in contract()["rendezvous_forbidden"].items():
            if name in attributes:
                raise AttributesError(f"instance attribute {name} is set: {why}")
        _install_source(out)
        _pair(role, out, "registry_tls_cert", "registry_key_secret", "registry TLS needs the certificate and the "
              "secret version of its key (pilot-fleet:registry.tls)")
    _pair(role, out, "ops_agent_version", "ops_agent_config", "the Ops Agent's version and config attributes come "
          "together: set both (pilot-fleet:monitoring.opsAgentVersion) or neither")
    return out


def _pair(role: str, out: dict[str, Any], first: str, second: str, why: str) -> None:
    """Two attributes of ROLE (by field name) that come together: one without the other is refused."""
    if bool(out[first]) != bool(out[second]):
        have, need = (first, second) if out[first] else (second, first)
        raise AttributesError(f"instance attribute {rules(role)[have]['key']} is set without "
                              f"{rules(role)[need]['key']}: {why}")


def _install_source(out: dict[str, Any]) -> None:
    """A prebuilt release needs its sha256; else every value of the pinned source is needed."""
    if out["release_url"]:
        if not out["release_sha256"]:
            raise AttributesError(f"instance attribute {key('RENDEZVOUS_SHA256')} is missing: set "
                                  "pilot-fleet:rendezvous.release.sha256")
        return
    source = ("source_commit", "source_url", "source_digest", "go_version")
    if not any(out[f] for f in source):
        raise AttributesError(f"the rendezvous has no install source: instance attributes {key('RENDEZVOUS_URL')} "
                              f"and {key('RENDEZVOUS_SOURCE_COMMIT')} are both missing (set "
                              "pilot-fleet:rendezvous.source or .release)")
    for field in source:
        if not out[field]:
            raise AttributesError(f"instance attribute {rules('rendezvous')[field]['key']} is missing")


# What a swarm VM's attributes give the supervisor's Config (the rest is the boot path's).
# registration_addresses: the boot path turns the count into addresses and routes (sources.py), at each boot; the Ops
# Agent is the boot path's too (a package and a system service, as root).
NOT_SETTINGS = ("daemon_release", "state_device", "max_target_agents", "registration_addresses", "ops_agent_version",
                "ops_agent_config")


def settings(attributes: dict[str, str], arch: str = platform.machine()) -> dict[str, Any]:
    """The Config fields a swarm VM's attributes ask for, checked: the boot path and the live watcher use this one
    function."""
    checked = check("swarm", attributes)
    out = {name: value for name, value in checked.items() if name not in NOT_SETTINGS and name != "role"}
    out.update(release(checked["daemon_release"], checked["version"], arch))
    return out


def release(raw: str, version: str, arch: str) -> dict[str, Any]:
    """The wheel for this CPU and the optional flags, from the daemon release attribute
    (fleet/facts/data/pilot_releases.yaml)."""
    name = key("DAEMON_RELEASE")
    try:
        document = json.loads(raw)
        wheel = document["wheels"][arch]
        url, sha256, flags = str(wheel["url"]), str(wheel["sha256"]), list(document["flags"])
        same = document["version"] == version
    except (ValueError, KeyError, TypeError):
        raise AttributesError(f"instance attribute {name} is not a release with a wheel for {arch} "
                              "(fleet/facts/data/pilot_releases.yaml)") from None
    if not same:
        raise AttributesError(f"instance attribute {name} describes {document['version']}, not "
                              f"{key('VERSION')}={version}")
    if not url.startswith("https://") or not re.fullmatch(r"[0-9a-f]{64}", sha256) or \
            not all(isinstance(f, str) and FLAG.match(f) for f in flags):
        raise AttributesError(f"instance attribute {name}: wheel url, sha256 or flags are malformed")
    return {"wheel_url": url, "wheel_sha256": sha256, "daemon_flags": tuple(flags)}


def script_keys(names: list[str]) -> list[str]:
    """The instance-level keys among NAMES that run scripts: they bypass or double the project-level script."""
    rule = contract()["script_keys"]
    return sorted(n for n in names if n in rule["names"] or n.startswith(tuple(rule["prefixes"]))
                  or re.match(rule["pattern"], n))


def _watched(url: str, query: list[str], etag: str, wait_seconds: int) -> tuple[bytes, str]:
    """A metadata answer and its ETag; with `wait_seconds`, held until it differs from `etag` (or the wait ends), as
    Compute Engine documents for watching metadata. An answer over MAX_ANSWER_BYTES is an error."""
    if wait_seconds:
        query = [*query, "wait_for_change=true", f"timeout_sec={wait_seconds}"]
        query += [f"last_etag={etag}"] if etag else []
    request = urllib.request.Request(url + (f"?{'&'.join(query)}" if query else ""),
                                     headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(request, timeout=wait_seconds + 15) as response:
        raw = response.read(MAX_ANSWER_BYTES + 1)
        tag = response.headers.get("ETag", "")
    if len(raw) > MAX_ANSWER_BYTES:
        raise MetadataError(f"the metadata server's answer is over {MAX_ANSWER_BYTES} bytes")
    return raw, tag


def fetch_attributes(metadata_url: str, etag: str = "", wait_seconds: int = 0) -> tuple[dict[str, str], str]:
    """This VM's instance attributes and their ETag, watched with `wait_seconds` (`_watched`)."""
    raw, tag = _watched(f"{metadata_url.rstrip('/')}/instance/attributes/", ["recursive=true"], etag, wait_seconds)
    body = json.loads(raw.decode())
    if not isinstance(body, dict):
        raise MetadataError("the metadata server's attributes are not an object")
    return {str(k): str(v) for k, v in body.items()}, tag


def fetch_project_value(metadata_url: str, name: str, etag: str = "", wait_seconds: int = 0) -> tuple[str, str]:
    """One project metadata value (the fleet's `startup-script`) and its ETag, watched as the attributes are; ("",
    "") when the project has no such item (a 404: nothing to watch, and no fault)."""
    try:
        raw, tag = _watched(f"{metadata_url.rstrip('/')}/project/attributes/{name}", [], etag, wait_seconds)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return "", ""
        raise
    return raw.decode(), tag


def fetch_instance_value(metadata_url: str, path: str, etag: str = "", wait_seconds: int = 0) -> tuple[str, str]:
    """One instance value (e.g. `preempted`) and its ETag, watched as the attributes are."""
    raw, tag = _watched(f"{metadata_url.rstrip('/')}/instance/{path}", [], etag, wait_seconds)
    return raw.decode(errors="replace").strip(), tag


def preempted_now(metadata_url: str) -> bool:
    """Whether Compute Engine says it is preempting this VM, asked once and quickly (a stop cannot wait)."""
    request = urllib.request.Request(f"{metadata_url.rstrip('/')}/instance/preempted",
                                     headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.read(16).decode(errors="replace").strip().upper() == "TRUE")
    except (OSError, ValueError, http.client.HTTPException):
        return False


def instance_value(metadata_url: str, path: str) -> str:
    """One instance value (name, external IP); "" when the metadata server has none."""
    request = urllib.request.Request(f"{metadata_url.rstrip('/')}/instance/{path}",
                                     headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.read().decode().strip())
    except OSError:
        return ""
