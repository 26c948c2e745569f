"""The readable plan: resources as a tree (type, name, key inputs), then the stack outputs."""

from __future__ import annotations

import json
from typing import Any

from fleet.pilot import ROLE_RENDEZVOUS, MetadataKey
from fleet.plan.mock_engine import MOCK_EXTERNAL_NET, Plan, PlannedResource


def short_type(type_: str) -> str:
    """'gcp:compute/instance:Instance' -> 'gcp:compute:Instance'."""
    parts = type_.split(":")
    if len(parts) == 3 and "/" in parts[1]:
        return f"{parts[0]}:{parts[1].split('/')[0]}:{parts[2]}"
    return type_


def key_inputs(res: PlannedResource) -> str:
    i = res.inputs
    kind = res.type.rsplit(":", 1)[-1]
    if kind == "Instance":
        md = i.get("metadata") or {}
        pilot = " ".join(f"{k.removeprefix('pilot-')}={v}" for k, v in sorted(md.items())
                         if k in ("pilot-role", "pilot-agent-target"))
        return f"{i.get('machineType')} {i.get('zone')} {pilot}{_rendezvous_binary(md)}"
    if kind == "Firewall":
        allows = ",".join(f"{p}/{a.get('protocol')}" for a in i.get("allows") or [] for p in a.get("ports") or ["*"])
        return f"{allows} from {','.join(i.get('sourceRanges') or [])} to {','.join(i.get('targetTags') or [])}"
    if kind == "ProjectMetadataItem":
        return f"key={i.get('key')} ({len(str(i.get('value') or '')):,} bytes)"
    if kind == "Subnetwork":
        return f"{i.get('ipCidrRange')} {i.get('region')}"
    if kind == "Address":
        return f"{i.get('addressType')} {i.get('region')}"
    if kind == "Disk":
        return f"{i.get('size')} GB {i.get('type')} {i.get('zone')}"
    if kind == "Account":
        return str(i.get("accountId"))
    if kind == "IAMMember":
        return str(i.get("role"))
    return ""


def _rendezvous_binary(metadata: dict[str, Any]) -> str:
    """Where a rendezvous VM's binary comes from, as its startup script will decide (a release wins)."""
    if metadata.get(MetadataKey.ROLE) != ROLE_RENDEZVOUS:
        return ""
    if metadata.get(MetadataKey.RENDEZVOUS_URL):
        return f" binary=release {metadata[MetadataKey.RENDEZVOUS_URL]}"
    commit = metadata.get(MetadataKey.RENDEZVOUS_SOURCE_COMMIT)
    if commit:
        url = str(metadata.get(MetadataKey.RENDEZVOUS_SOURCE_URL, ""))
        where = url.removeprefix("https://").split("/archive/")[0]
        return f" binary=built from {where}@{str(commit)[:12]} with go {metadata.get(MetadataKey.GO_VERSION)}"
    return " binary=NONE (no install source)"


def render_plan(plan: Plan) -> str:
    children: dict[str | None, list[PlannedResource]] = {}
    for res in plan.resources:
        children.setdefault(res.parent, []).append(res)
    rows: list[tuple[str, str, str]] = []

    def walk(parent: str | None, depth: int) -> None:
        for res in sorted(children.get(parent, []), key=lambda r: (short_type(r.type), r.name)):
            rows.append(("  " * depth + short_type(res.type), res.name, key_inputs(res)))
            walk(res.urn, depth + 1)

    walk(None, 0)
    width_t = max((len(r[0]) for r in rows), default=4)
    width_n = max((len(r[1]) for r in rows), default=4)
    lines = [f"Plan of stack {plan.stack!r} (project {plan.project}): {len(plan.resources)} resources, "
             f"{sum(r.custom for r in plan.resources)} of them cloud resources", ""]
    lines.append(f"{'TYPE':<{width_t}}  {'NAME':<{width_n}}  KEY INPUTS")
    lines += [f"{t:<{width_t}}  {n:<{width_n}}  {k}".rstrip() for t, n, k in rows]
    lines += ["", "Outputs:"]
    lines += [f"  {name}: {_compact(value)}" for name, value in plan.outputs.items()]
    lines += ["", f"(Addresses in {MOCK_EXTERNAL_NET}.0/24 and IDs are stand-ins from the mock engine; "
                  "the cloud assigns the real ones.)"]
    return "\n".join(lines)


def _compact(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return "\n" + "\n".join(f"    - {json.dumps(v, sort_keys=False)}" for v in value)
    return json.dumps(value)
