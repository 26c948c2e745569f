"""Per-host figures the supervisors publish as guest attributes, read through the Compute Engine API
(`instances.getGuestAttributes`, namespace `pilot/`), so a shortfall is attributed to a host.

Guest attributes are the VM's own word (any process on it can write them). A VM's claim to be mid-change is believed
only where the fleet's own metadata for that VM (`instances.get`, what `pulumi up` set) agrees: a rollout to version
B only if the VM's metadata asks for B, a target not yet taken up only if its metadata asks for the stack's."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fleet.verify.compute_api import ComputeApi, failure, metadata_items
from fleet.vm_contract import RENAMED, RENAMED_GUEST_ATTRIBUTES, GuestAttribute, MetadataKey


@dataclass(frozen=True)
class HostReport:
    name: str
    target_agents: int  # what its supervisor says it works toward (the stack's, until it has said)
    running: int | None = None
    restarts: int | None = None
    bypassed_script: str | None = None
    error: str | None = None
    zone: str = ""
    pool: str = ""  # the managed instance group a pool VM belongs to
    planned_target_agents: int = 0  # the stack's target for this VM
    rollout: str | None = None  # the supervisor's `rollout` guest attribute, e.g. "rolling 1200/3000: version ..."
    # what the fleet's metadata for this VM asks (instances.get), read only when it claims a change; None: unread
    asked_version: str | None = None
    asked_target_agents: int | None = None
    # a pool VM its group is bringing back (a preempted Spot VM, a repair): the group's action and the VM's status
    recreating: str | None = None

    @property
    def claims_rollout(self) -> bool:
        return bool(self.rollout) and self.rollout.split(" ", 1)[0].rstrip(":") in ("rolling", "reverting")

    @property
    def claims_retarget(self) -> bool:
        """Its supervisor says it works toward a lower target than the stack's. A claim above the stack's is no
        change in progress, and never covers a shortfall."""
        changed = self.planned_target_agents and self.target_agents < self.planned_target_agents
        return bool(changed and self.running is not None)

    @property
    def converging(self) -> bool:
        """Mid-change, by its own word and the fleet's metadata: rolling agents over (or back) to the version its
        metadata asks for, or not yet at the target its metadata asks for. Its shortfall is the change in
        progress, not a fault."""
        return self.rolling or self.retargeted or bool(self.recreating)

    @property
    def rolling(self) -> bool:
        """A version rollout (or its revert) toward the version the VM's metadata asks for. Rollouts of other
        settings (GOGC, ports) cannot be checked against the metadata, and cover no shortfall."""
        if not self.claims_rollout or self.asked_version is None:
            return False
        destination = self.rollout.rsplit(" -> ", 1)[-1] if self.rollout and " -> " in self.rollout else None
        return destination == self.asked_version and " version " in f" {self.rollout}"

    @property
    def retargeted(self) -> bool:
        """A raised target not yet taken up: the VM's metadata asks for the stack's target."""
        return self.claims_retarget and self.asked_target_agents == self.planned_target_agents

    @property
    def ratio(self) -> float | None:
        if self.running is None or not self.target_agents:
            return None
        return self.running / self.target_agents


def guest_values(api: ComputeApi, project: str, zone: str, name: str) -> dict[str, str] | str:
    """A VM's guest attributes under `pilot/` (key -> value), or why they cannot be read."""
    doc = api.call(f"projects/{project}/zones/{zone}/instances/{name}/getGuestAttributes",
                   {"queryPath": f"{GuestAttribute.NAMESPACE}/"})
    if doc == "HTTP 404":
        return "no guest attributes yet (the supervisor has not published)"
    if isinstance(doc, str):
        return failure("getGuestAttributes", doc)
    try:
        items = doc.get("queryValue", {}).get("items", [])
        return {i["key"]: str(i["value"]) for i in items
                if i.get("namespace", GuestAttribute.NAMESPACE) == GuestAttribute.NAMESPACE}
    except (AttributeError, KeyError, TypeError):
        return failure("getGuestAttributes", "an unexpected document")


def read_host(api: ComputeApi, project: str, zone: str, name: str, target_agents: int) -> HostReport:
    values = guest_values(api, project, zone, name)
    if isinstance(values, str):
        return HostReport(name, target_agents, error=values)

    def number(key: str) -> int | None:
        # a supervisor that has not rebooted into the renamed contract still publishes the old name
        value = values.get(key, values.get(RENAMED_GUEST_ATTRIBUTES.get(key, ""), ""))
        return int(value) if value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS else None

    # a pool VM's own target is what its supervisor published (the template's target otherwise)
    report = HostReport(name, number(GuestAttribute.TARGET_AGENTS) or target_agents,
                        running=number(GuestAttribute.RUNNING_AGENTS), restarts=number(GuestAttribute.RESTARTS),
                        bypassed_script=shown(values.get(GuestAttribute.BYPASSED_STARTUP_SCRIPT)), zone=zone,
                        planned_target_agents=target_agents, rollout=shown(values.get(GuestAttribute.ROLLOUT)))
    if not (report.claims_rollout or report.claims_retarget):
        return report
    metadata = read_metadata(api, project, zone, name)
    if metadata is None:
        return report  # unread: its claim is not believed
    target = metadata.get(MetadataKey.TARGET_AGENTS, metadata.get(RENAMED[MetadataKey.TARGET_AGENTS], ""))
    return dataclasses.replace(
        report, asked_version=metadata.get(MetadataKey.VERSION, "")[:MAX_TEXT],
        asked_target_agents=int(target) if target.isascii() and target.isdigit() and len(target) <= MAX_DIGITS
        else None)


def read_metadata(api: ComputeApi, project: str, zone: str, name: str) -> dict[str, str] | None:
    """The VM's instance metadata as Compute Engine holds it (instances.get), or None when it cannot be read."""
    doc = api.call(f"projects/{project}/zones/{zone}/instances/{name}")
    return None if isinstance(doc, str) else metadata_items(doc.get("metadata"))


# Guest attributes are the VM's word: any process on it can write them. Counts are whole numbers of at most this
# many digits (no VM runs ten million agents), text is printable ASCII, cut to a line, before it is printed.
MAX_DIGITS = 7
MAX_TEXT = 200


def shown(value: str | None) -> str | None:
    """A guest attribute's text as it may be printed: printable ASCII (anything else escaped), one line, cut."""
    if value is None:
        return None
    text = "".join(c if c.isascii() and c.isprintable() else f"\\x{ord(c):02x}"[:6] for c in value[:MAX_TEXT])
    return text + (" [cut]" if len(value) > MAX_TEXT else "")


# What a group's VM is while the group brings it back: its action (listManagedInstances' currentAction), or the VM's
# own status (a preempted Spot VM is STOPPING, then TERMINATED until the group recreates it)
BRINGING_BACK = ("RECREATING", "CREATING", "CREATING_WITHOUT_RETRIES", "RESTARTING", "STARTING", "VERIFYING")
NOT_UP = ("STOPPING", "STOPPED", "TERMINATED", "PROVISIONING", "STAGING", "REPAIRING", "SUSPENDING", "SUSPENDED")


def list_pool_instances(api: ComputeApi, manager_path: str) -> list[tuple[str, str, str | None]] | str:
    """(name, zone, what its group is doing to it or None) of a managed instance group's VMs
    (instanceGroupManagers.listManagedInstances), or why not."""
    instances: list[tuple[str, str, str | None]] = []
    for doc in api.pages(f"{manager_path}/listManagedInstances", method="POST"):
        if isinstance(doc, str):
            return failure("listManagedInstances", doc)
        try:
            for item in doc.get("managedInstances", []):
                parts = str(item["instance"]).split("/")
                action, status = str(item.get("currentAction") or "NONE"), str(item.get("instanceStatus") or "")
                back = f"{action.lower()}, {status.lower() or 'no status'}" \
                    if action in BRINGING_BACK or status in NOT_UP else None
                instances.append((parts[parts.index("instances") + 1], parts[parts.index("zones") + 1], back))
        except (ValueError, AttributeError, KeyError, TypeError, IndexError):
            return failure("listManagedInstances", "an unexpected document")
    return instances


def read_registry_restore(api: ComputeApi, project: str, name: str, zone: str) -> str | None:
    """The rendezvous VM's `registry-restored-from` (escaped), or None when it has none or cannot be read."""
    values = guest_values(api, project, zone, name)
    return None if isinstance(values, str) else shown(values.get(GuestAttribute.REGISTRY_RESTORED_FROM))


def read_hosts(api: ComputeApi, project: str, hosts: list[tuple[str, str, int]],
               pools: list[tuple[str, str, int]] | None = None) -> list[HostReport]:
    """hosts: (name, zone, target_agents); pools: (name, manager path, target_agents), each VM of which is read like
    a host."""
    reports = [read_host(api, project, zone, name, target_agents) for name, zone, target_agents in hosts]
    for pool, manager_path, target_agents in pools or []:
        listed = list_pool_instances(api, manager_path)
        if isinstance(listed, str):
            reports.append(HostReport(pool, target_agents, error=listed, pool=pool))
            continue
        for name, zone, back in listed:
            if back:  # no guest attributes to read from a VM that is not up: what its group does says it all
                reports.append(HostReport(name, target_agents, zone=zone, pool=pool,
                                          planned_target_agents=target_agents, recreating=back))
                continue
            report = read_host(api, project, zone, name, target_agents)
            reports.append(dataclasses.replace(report, pool=pool))
    return reports
