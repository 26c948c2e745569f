"""What a plan changes that reaches its VMs only at their next boot (`fleet plan --compare OLD_PLAN.json`).

Most of a swarm VM's attributes converge live (fleet/vm_contract.py); a few do not (NEXT_BOOT_SWARM_KEYS, and the
alias IP range that gives a VM its registration addresses), and a rendezvous reads all of its attributes at boot.
`pulumi up` applies such a change to the VM's metadata and says nothing more: this names the VMs and the values, so
an operator knows a reboot (or a recreation) is what makes them take effect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleet.facts import pilot
from fleet.vm_contract import NEXT_BOOT_SWARM_KEYS, MetadataKey

VM_TYPES = ("gcp:compute/instance:Instance", "gcp:compute/instanceTemplate:InstanceTemplate",
            "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate")


class PlanFileError(Exception):
    """A plan file that cannot be compared; the message names the file and the reason."""


def load_plan(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise PlanFileError(f"{path}: cannot read it ({exc.strerror})") from None
    except (ValueError, RecursionError) as exc:
        raise PlanFileError(f"{path}: not JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("resources"), list):
        raise PlanFileError(f"{path}: not a plan written by `fleet plan --json` (no resources list)")
    return document


def _vms(plan: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """A plan's VMs and templates by name (the name a pool's template or a host's VM has in every plan)."""
    return {r["name"]: r.get("inputs") or {} for r in plan["resources"]
            if isinstance(r, dict) and r.get("type") in VM_TYPES and isinstance(r.get("name"), str)}


def _alias_ranges(inputs: Mapping[str, Any]) -> list[str]:
    interfaces = inputs.get("networkInterfaces") or []
    return [str(a.get("ipCidrRange")) for nic in interfaces if isinstance(nic, dict)
            for a in nic.get("aliasIpRanges") or [] if isinstance(a, dict)]


def _metadata(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = inputs.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


# A value longer than this (a certificate, an Ops Agent config) is named by its size, not printed
SHOWN_CHARS = 60


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    text = str(value)
    return text if len(text) <= SHOWN_CHARS else f"({len(text):,} characters)"


def next_boot_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """One line per VM (or pool template) of both plans whose next-boot-only settings differ."""
    before, lines = _vms(old), []
    for name, inputs in sorted(_vms(new).items()):
        if name not in before:
            continue
        was, now = _metadata(before[name]), _metadata(inputs)
        rendezvous = now.get(MetadataKey.ROLE) == pilot.ROLE_RENDEZVOUS
        keys = sorted(k for k in set(was) | set(now) if k.startswith("pilot-")) if rendezvous \
            else list(NEXT_BOOT_SWARM_KEYS)
        changed = [f"{key} {_shown(was.get(key))} -> {_shown(now.get(key))}" for key in keys
                   if was.get(key) != now.get(key)]
        if _alias_ranges(before[name]) != _alias_ranges(inputs):
            changed.append(f"alias IP range {','.join(_alias_ranges(before[name])) or 'none'} -> "
                           f"{','.join(_alias_ranges(inputs)) or 'none'}")
        if changed:
            lines.append(f"{name}: {'; '.join(changed)}")
    return lines


def render_next_boot(old_path: Path, lines: list[str]) -> str:
    if not lines:
        return f"Next boot only (against {old_path}): nothing; every change converges live."
    return "\n".join([f"Next boot only (against {old_path}): these take effect when each VM next boots "
                      "(a reboot, or a recreation), not at `pulumi up`:", *(f"    {line}" for line in lines)])
