"""Values not known at preview. The engine sends them as sentinels, and pulumi-policy's proxy raises on reading
one, which would abort a whole stack rule for every VM. The VM model reads each resource once into plain data
(`plain`), with `UNKNOWN` in place of each such value and the path of each one recorded. A rule then skips only the
VMs whose values it needs are unknown (`NEEDS`). The advisory rule `preview-unknowns` says which VM, which rule and
which value; `pulumi up` judges them again with every value known."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy.proxy import UnknownValueError

from .gce import NESTED_METADATA, VM_TYPES


class _Unknown:
    """A value the engine does not know at preview."""

    def __repr__(self) -> str:
        return "<not known at preview>"

    def __str__(self) -> str:
        return ""


UNKNOWN = _Unknown()

# What each stack rule reads of a VM, as paths into its effective properties ("metadata.KEY" for one metadata
# value, "metadata" for all of it). A VM where one of them is unknown is not judged by that rule at preview.
NEEDS: dict[str, tuple[str, ...]] = {
    "agents-fit-memory": ("metadata.pilot-role", "metadata.pilot-target-agents", "metadata.pilot-agent-target",
                          "machineType"),
    "pilot-ports-open": ("metadata.pilot-role", "metadata.pilot-registry-port", "metadata.pilot-beacon-port",
                         "metadata.pilot-base-udp-port", "metadata.pilot-target-agents",
                         "metadata.pilot-agent-target", "networkInterfaces", "network", "tags", "serviceAccount",
                         "params"),
    "pools-heal-safely": ("metadata.pilot-role", "metadata.pilot-health-port", "networkInterfaces", "network", "tags",
                          "serviceAccount", "params"),
    "pools-keep-agent-state": ("metadata.pilot-role", "metadata.pilot-state-device", "disks"),
    "rendezvous-keeps-its-registry": ("metadata.pilot-standby-of",),
    "rendezvous-store-snapshots": ("metadata.pilot-role",),
}

# Which VMs each rule judges: their roles (none: every VM), and whether only templates and groups' VMs (the pool
# rules). A VM whose role is known and is not one of them is not reported for that rule.
JUDGES: dict[str, tuple[tuple[str, ...], bool]] = {
    "agents-fit-memory": (("swarm",), False),
    "pilot-ports-open": (("rendezvous", "swarm"), False),
    "pools-heal-safely": (("swarm",), True),
    "pools-keep-agent-state": (("swarm",), True),
    "rendezvous-keeps-its-registry": ((), False),
    "rendezvous-store-snapshots": (("rendezvous",), False),
}


def plain(value: Any, path: str = "", unknown: list[str] | None = None) -> Any:
    """VALUE (possibly one of pulumi-policy's proxies) as plain dicts and lists, each unknown value replaced by
    UNKNOWN and its path appended to UNKNOWN."""
    found = unknown if unknown is not None else []
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key in list(value):
            try:
                item = value[key]
            except UnknownValueError:
                found.append(f"{path}{key}")
                result[key] = UNKNOWN
                continue
            result[key] = plain(item, f"{path}{key}.", found)
        return result
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = []
        for i in range(len(value)):
            try:
                item = value[i]
            except UnknownValueError:
                found.append(f"{path}{i}")
                items.append(UNKNOWN)
                continue
            items.append(plain(item, f"{path}{i}.", found))
        return items
    return value


def unknown_of(unknown: Iterable[str], needs: Iterable[str]) -> list[str]:
    """The unknown paths that a check needing NEEDS reads: a path equal to one it needs, inside one (a key of an
    unknown value), or around one (the whole metadata map, when it needs one key)."""
    return sorted({u for u in unknown for n in needs if u == n or u.startswith(f"{n}.") or n.startswith(f"{u}.")})


@dataclass(frozen=True)
class Plain:
    """One resource read once: its properties as plain data, and the paths of the values not known at preview."""

    resource: Any
    props: Mapping[str, Any]
    unknown: frozenset[str]

    @staticmethod
    def of(resource: Any) -> Plain:
        unknown: list[str] = []
        props = plain(resource.props, "", unknown)
        return Plain(resource, props if isinstance(props, Mapping) else {}, frozenset(unknown))

    def metadata(self) -> tuple[Mapping[str, Any], frozenset[str]]:
        """The metadata this resource carries (a VM's own, a group's all-instances config's, a per-instance
        config's), and its unknown paths as "metadata..." paths."""
        kind = self.resource.resource_type
        if kind in VM_TYPES:
            where = ("metadata",)
        elif kind in NESTED_METADATA:
            where = NESTED_METADATA[kind]
        else:
            return {}, frozenset()
        block: Any = self.props
        for step in where:
            block = block.get(step) if isinstance(block, Mapping) else None
        prefix = ".".join(where)
        unknown = {"metadata" + u[len(prefix):] for u in self.unknown if u == prefix or u.startswith(f"{prefix}.")}
        # a nested block not known at all (allInstancesConfig unknown) hides the metadata in it
        unknown |= {"metadata" for u in self.unknown if prefix.startswith(f"{u}.")}
        return (block if isinstance(block, Mapping) else {}), frozenset(unknown)
