"""The seed fleet's worst incident, caught after the fact whoever caused it: a startup script baked into a VM's own
metadata by an earlier deployment (it ran beside the project's script and started a second fleet on reboot).

Through the Compute Engine API: every VM of the fleet (the outputs' hosts and pool VMs, the rendezvous, and any VM
of the project labelled app=pilot-fleet, found with instances.aggregatedList) is read with its instance metadata; a
script key there (`startup-script`, `user-data`, ... the VM contract's list) is a problem, and so is one in the
zone-level metadata of a zone the fleet runs in (`instanceSettings`), which overrides the project's script for
every VM of the zone."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from fleet.facts import pilot
from fleet.verify.compute_api import ComputeApi, failure, metadata_items
from fleet.vm_contract import SCRIPT_METADATA_KEYS, SCRIPT_METADATA_PATTERN, SCRIPT_METADATA_PREFIXES


def script_keys(keys: Iterable[str]) -> list[str]:
    return sorted(k for k in keys if k in SCRIPT_METADATA_KEYS or k.startswith(SCRIPT_METADATA_PREFIXES)
                  or re.match(SCRIPT_METADATA_PATTERN, k))


def labelled_vms(api: ComputeApi, project: str) -> dict[tuple[str, str], dict[str, str] | None] | str:
    """(name, zone) -> metadata of the project's VMs labelled as the fleet's, or why they cannot be listed."""
    found: dict[tuple[str, str], dict[str, str] | None] = {}
    params = {"filter": f"labels.app = {pilot.PROJECT_NAME}"}
    for doc in api.pages(f"projects/{project}/aggregated/instances", params):
        if isinstance(doc, str):
            return failure("instances.aggregatedList", doc)
        scopes = doc.get("items") or {}
        if not isinstance(scopes, Mapping):
            return failure("instances.aggregatedList", "an unexpected document (items is not an object)")
        for scope in scopes.values():
            listed = scope.get("instances", []) if isinstance(scope, Mapping) else []
            for vm in listed if isinstance(listed, list) else []:
                if isinstance(vm, Mapping) and "name" in vm:
                    zone = str(vm.get("zone", "")).rsplit("/", 1)[-1]
                    found[(str(vm["name"]), zone)] = metadata_items(vm.get("metadata"))
    return found


def audit(api: ComputeApi, project: str, vms: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(problems, one line each naming the VM or the zone and the key; what could not be read)."""
    problems: list[str] = []
    unread: list[str] = []
    listed = labelled_vms(api, project)
    if isinstance(listed, str):
        unread.append(f"could not list the project's fleet VMs: {listed}")
        listed = {}
    known = dict(listed)
    for name, zone in vms:
        if (name, zone) not in known:
            doc = api.call(f"projects/{project}/zones/{zone}/instances/{name}")
            known[(name, zone)] = doc if isinstance(doc, str) else metadata_items(doc.get("metadata"))
    for (name, zone), metadata in sorted(known.items(), key=lambda item: item[0]):
        if isinstance(metadata, str) or metadata is None:
            said = failure("instances.get", metadata or "an unexpected document")
            unread.append(f"could not read the metadata of {name} ({zone}): {said}")
            continue
        for key in script_keys(metadata):
            problems.append(f"VM {name} ({zone}) carries the instance-level script key {key}: it runs beside or "
                            "instead of the project's startup script (remove it from the VM's metadata)")
    for zone in sorted({zone for _, zone in known}):
        doc = api.call(f"projects/{project}/zones/{zone}/instanceSettings")
        if doc == "HTTP 404":
            continue  # a zone without instance settings: nothing overrides there
        settings = doc if isinstance(doc, str) else metadata_items(doc.get("metadata"))
        if isinstance(settings, str) or settings is None:
            unread.append(f"could not read the instance settings of zone {zone}: "
                          f"{failure('instanceSettings.get', settings or 'an unexpected document')}")
            continue
        for key in script_keys(settings):
            problems.append(f"zone {zone} has the zone-level metadata key {key} (instanceSettings): it overrides the "
                            "project's startup script for every VM in the zone")
    return problems, unread
