"""The readable plan: resources as a tree (type, name, key inputs), then the stack outputs."""

from __future__ import annotations

import json
from typing import Any

from fleet.facts.pilot import ROLE_RENDEZVOUS
from fleet.plan.mock_engine import MOCK_EXTERNAL_NET, Plan, PlannedResource
from fleet.vm_contract import MetadataKey


def short_type(type_: str) -> str:
    """'gcp:compute/instance:Instance' -> 'gcp:compute:Instance'."""
    parts = type_.split(":")
    if len(parts) == 3 and "/" in parts[1]:
        return f"{parts[0]}:{parts[1].split('/')[0]}:{parts[2]}"
    return type_


def row_inputs(res: PlannedResource) -> str:
    """key_inputs, or a note when an input is not of the shape a row shows: values unknown at preview (a whole
    metadata map computed from another resource), or a number where a string is usual, must never fail the plan."""
    try:
        return key_inputs(res)
    except (AttributeError, TypeError, ValueError):
        return "(some inputs are not known until the resources they come from exist)"


def key_inputs(res: PlannedResource) -> str:
    i = res.inputs
    kind = res.type.rsplit(":", 1)[-1]
    if kind in ("Instance", "InstanceTemplate"):
        md = i.get("metadata") or {}
        shown = (MetadataKey.ROLE, MetadataKey.TARGET_AGENTS) + \
            ((MetadataKey.VERSION, MetadataKey.REGISTRATION_ADDRESSES) if md.get(MetadataKey.ROLE) == "swarm" else ())
        pilot = " ".join(f"{k.removeprefix('pilot-')}={v}" for k, v in sorted(md.items()) if k in shown)
        where = "" if kind == "InstanceTemplate" else f" {i.get('zone')}"
        nics = i.get("networkInterfaces") or [{}]
        aliases = " alias-ip=" + ",".join(str(r.get("ipCidrRange")) for r in nics[0].get("aliasIpRanges")) \
            if nics and isinstance(nics[0], dict) and nics[0].get("aliasIpRanges") else ""
        return f"{i.get('machineType')}{where} {pilot}{aliases}{_rendezvous_binary(md)}"
    if kind == "Firewall":
        return _firewall(i)
    if kind in ("InstanceGroupManager", "RegionInstanceGroupManager"):
        zones = ",".join(i.get("distributionPolicyZones") or [str(i.get("zone") or "")])
        heal = i.get("autoHealingPolicies") or {}
        heal = heal[0] if isinstance(heal, list) and heal else heal
        update = i.get("updatePolicy") or {}
        kept = ",".join(f"{d.get('deviceName')}({d.get('deleteRule') or 'NEVER'})"
                        for d in i.get("statefulDisks") or [])
        return (f"size={i.get('targetSize')} zones={zones} ({i.get('description', '')}) autohealing after "
                f"{heal.get('initialDelaySec')} s, update {update.get('minimalAction')}.."
                f"{update.get('mostDisruptiveAllowedAction')} maxSurge={update.get('maxSurgeFixed')} "
                f"maxUnavailable={update.get('maxUnavailableFixed')}, stateful disks {kept or 'none'}")
    if kind == "HealthCheck":
        http = i.get("httpHealthCheck") or {}
        return f"http :{http.get('port')}{http.get('requestPath', '')} every {i.get('checkIntervalSec')} s"
    if kind == "ProjectMetadataItem":
        return f"key={i.get('key')} ({len(str(i.get('value') or '')):,} bytes)"
    if kind == "Subnetwork":
        return f"{i.get('ipCidrRange')} {i.get('region')}"
    if kind == "Address":
        return f"{i.get('addressType')} {i.get('region')}"
    if kind == "RegionDisk":
        zones = ",".join(i.get("replicaZones") or [])
        return f"{i.get('size')} GB {i.get('type')} {i.get('region')} replicated in {zones}"
    if kind == "Disk":
        return f"{i.get('size')} GB {i.get('type')} {i.get('zone')}"
    if kind == "Account":
        return str(i.get("accountId"))
    if kind == "IAMMember":
        return str(i.get("role"))
    return ""


def _firewall(i: dict[str, Any]) -> str:
    """Ports, then every kind of source and target the rule names (an ingress rule with no source at all is
    0.0.0.0/0 to Compute Engine; one with no target applies to every instance of the network)."""
    rules = [("deny", r) for r in i.get("denies") or []] + [("", r) for r in i.get("allows") or []]
    ports = ",".join(f"{verb + ' ' if verb else ''}{port}/{r.get('protocol')}"
                     for verb, r in rules for port in r.get("ports") or ["*"])
    sources = [*(i.get("sourceRanges") or []), *(f"tag:{t}" for t in i.get("sourceTags") or []),
               *(f"sa:{a}" for a in i.get("sourceServiceAccounts") or [])]
    targets = [*(i.get("targetTags") or []), *(f"sa:{a}" for a in i.get("targetServiceAccounts") or [])]
    text = (f"{ports} from {','.join(sources) or '0.0.0.0/0 (no source given)'} "
            f"to {','.join(targets) or 'every instance'}")
    if i.get("direction") == "EGRESS":
        text = f"egress {text}"
    if i.get("priority") is not None:
        text += f" priority {i['priority']}"
    return text + (" DISABLED" if i.get("disabled") else "")


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
            rows.append(("  " * depth + short_type(res.type), res.name, row_inputs(res)))
            walk(res.urn, depth + 1)

    walk(None, 0)
    width_t = max((len(r[0]) for r in rows), default=4)
    width_n = max((len(r[1]) for r in rows), default=4)
    mode = " as `pulumi up` resolves it" if plan.mode == "up" else ""
    lines = [f"Plan of stack {plan.stack!r} (project {plan.project}){mode}: {len(plan.resources)} resources, "
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
