"""The seed fleet's worst incident, caught after the fact whoever caused it: a startup script baked into a VM's own
metadata by an earlier deployment (it ran beside the project's script and started a second fleet on reboot).

Through the Compute Engine API: every VM of the fleet (the outputs' hosts and pool VMs, the rendezvous, and any VM
of the project labelled app=pilot-fleet, found with instances.aggregatedList) is read with its instance metadata; a
script key there (`startup-script`, `user-data`, ... the VM contract's list) is a problem, and so is one in the
zone-level metadata of a zone the fleet runs in (`instanceSettings`), which overrides the project's script for
every VM of the zone."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import requests

from fleet.facts import pilot
from fleet.verify.guest_attributes import API_ENV, COMPUTE_API, access_token
from fleet.vm_contract import SCRIPT_METADATA_KEYS, SCRIPT_METADATA_PATTERN, SCRIPT_METADATA_PREFIXES


def script_keys(keys: Iterable[str]) -> list[str]:
    return sorted(k for k in keys if k in SCRIPT_METADATA_KEYS or k.startswith(SCRIPT_METADATA_PREFIXES)
                  or re.match(SCRIPT_METADATA_PATTERN, k))


def _items(metadata: Any) -> list[str]:
    """The keys of a metadata block: instances list {key, value} items, instanceSettings a map."""
    items = metadata.get("items") if isinstance(metadata, Mapping) else None
    if isinstance(items, Mapping):
        return [str(k) for k in items]
    if isinstance(items, list):
        return [str(i["key"]) for i in items if isinstance(i, Mapping) and "key" in i]
    return []


def _get(session: requests.Session, url: str, token: str, timeout: float,
         params: dict[str, str] | None = None) -> dict[str, Any] | str:
    try:
        response = session.get(url, params=params, timeout=timeout, headers={"Authorization": f"Bearer {token}"})
        if response.status_code != 200:
            return f"HTTP {response.status_code}"
        doc = response.json()
    except (requests.RequestException, ValueError) as exc:
        return type(exc).__name__
    return doc if isinstance(doc, dict) else "an unexpected document"


def labelled_vms(session: requests.Session, api: str, project: str, token: str,
                 timeout: float) -> dict[tuple[str, str], list[str]] | str:
    """(name, zone) -> metadata keys of the project's VMs labelled as the fleet's, or why they cannot be listed."""
    found: dict[tuple[str, str], list[str]] = {}
    params = {"filter": f"labels.app = {pilot.PROJECT_NAME}"}
    while True:
        doc = _get(session, f"{api}/projects/{project}/aggregated/instances", token, timeout, params)
        if isinstance(doc, str):
            return f"instances.aggregatedList answered {doc}"
        for scope in (doc.get("items") or {}).values():
            for vm in scope.get("instances", []) if isinstance(scope, Mapping) else []:
                if isinstance(vm, Mapping) and "name" in vm:
                    zone = str(vm.get("zone", "")).rsplit("/", 1)[-1]
                    found[(str(vm["name"]), zone)] = _items(vm.get("metadata"))
        if not doc.get("nextPageToken"):
            return found
        params = {**params, "pageToken": str(doc["nextPageToken"])}


def audit(session: requests.Session, api: str, project: str, token: str, vms: Iterable[tuple[str, str]],
          timeout: float = 10.0) -> tuple[list[str], list[str]]:
    """(problems, one line each naming the VM or the zone and the key; what could not be read)."""
    problems: list[str] = []
    unread: list[str] = []
    listed = labelled_vms(session, api, project, token, timeout)
    if isinstance(listed, str):
        unread.append(f"could not list the project's fleet VMs: {listed}")
        listed = {}
    known = dict(listed)
    for name, zone in vms:
        if (name, zone) in known:
            continue
        doc = _get(session, f"{api}/projects/{project}/zones/{zone}/instances/{name}", token, timeout)
        if isinstance(doc, str):
            unread.append(f"could not read the metadata of {name} ({zone}): instances.get answered {doc}")
            continue
        known[(name, zone)] = _items(doc.get("metadata"))
    for (name, zone), keys in sorted(known.items()):
        for key in script_keys(keys):
            problems.append(f"VM {name} ({zone}) carries the instance-level script key {key}: it runs beside or "
                            "instead of the project's startup script (remove it from the VM's metadata)")
    for zone in sorted({zone for _, zone in known}):
        doc = _get(session, f"{api}/projects/{project}/zones/{zone}/instanceSettings", token, timeout)
        if doc == "HTTP 404":
            continue  # a zone without instance settings: nothing overrides there
        if isinstance(doc, str):
            unread.append(f"could not read the instance settings of zone {zone}: {doc}")
            continue
        for key in script_keys(_items(doc.get("metadata"))):
            problems.append(f"zone {zone} has the zone-level metadata key {key} (instanceSettings): it overrides the "
                            "project's startup script for every VM in the zone")
    return problems, unread


def audit_project(project: str, vms: Iterable[tuple[str, str]], timeout: float = 10.0) -> tuple[list[str], list[str]]:
    """audit() with the credentials and the API that the guest attributes are read with."""
    token = access_token()
    api = os.environ.get(API_ENV, COMPUTE_API).rstrip("/")
    with requests.Session() as session:
        return audit(session, api, project, token, vms, timeout)
