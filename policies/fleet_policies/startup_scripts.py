"""The boot path's rules: one project-level startup script, guarded and tuned; none on any VM."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Secret,
    StackValidationArgs,
    StackValidationPolicy,
)

from . import facts as pilot
from .gce import (
    INSTANCE_SETTINGS,
    NESTED_METADATA,
    PROJECT_METADATA,
    PROJECT_METADATA_ITEM,
    VM_TYPES,
    known,
    metadata_of,
    script_keys,
)
from .guard import missing_guards
from .network import project_of
from .vms import effective_vms

_NOT_KNOWN = object()


def _value(props: Mapping[str, Any], key: str) -> Any:
    """PROPS[KEY]; _NOT_KNOWN when the engine does not know it yet; None when it is not set. Which keys are set is
    known at preview even where their values are not (iterating the proxy reads no value)."""
    if key not in list(props):
        return None
    return known(lambda: props.get(key), _NOT_KNOWN)


def _instance_scripts(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    script = _value(args.props, "metadataStartupScript") if args.resource_type in VM_TYPES else None
    if script is _NOT_KNOWN or script:
        # set is enough: whatever its value (one not known until another resource exists), it takes the place of
        # the project's script on this VM
        value = " (its value not known at preview: set at all, it is enough)" if script is _NOT_KNOWN else ""
        report_violation(
            f"{args.name} sets metadataStartupScript{value}: an instance-level startup script disables the fleet's "
            "project-level script on this VM. Put boot logic in startup/ (the one project-level script).", None)
    keys = script_keys(metadata_of(args.resource_type, args.props))
    if keys:
        where = "metadata" if args.resource_type in VM_TYPES else ".".join(NESTED_METADATA[args.resource_type])
        report_violation(
            f"{args.name} carries script metadata key(s) {', '.join(keys)} in {where}: on Compute Engine an "
            "instance-level startup-script bypasses the project-level one, user-data runs cloud-init beside it "
            "(the seed fleet's ghost script spawned 500 extra agents). Remove them.", None)


def _stored(value: Any) -> Any:
    """The stored form behind one of pulumi-policy's property proxies, or VALUE itself: secrets still wrapped as
    `Secret`, unknowns still their sentinels. It is what the pack's own serializer sends back, so a map rebuilt
    from it keeps every other value exactly as it came (a secret stays a secret, an unknown stays unknown)."""
    try:
        return value["__target"] if isinstance(value, Mapping) else value
    except KeyError:
        return value


def _without(block: Any, drop: Sequence[str]) -> Any:
    """A metadata map (or a secret one) without the keys DROP."""
    stored = _stored(block)
    if isinstance(stored, Secret):
        return Secret(_without(stored.value, drop))
    return {k: v for k, v in stored.items() if k not in drop} if isinstance(stored, Mapping) else stored


def _strip_instance_scripts(args: ResourceValidationArgs) -> Mapping[str, Any] | None:
    """The remediation (enforcement level `remediate`): the same properties without `metadataStartupScript` and
    without every script key of the VM's, the group's or the per-instance config's metadata; None when there is
    nothing to strip. What is not known at preview is left as it is (the validation then says so)."""
    field = args.resource_type in VM_TYPES and bool(known(lambda: args.props.get("metadataStartupScript")))
    keys = script_keys(known(lambda: metadata_of(args.resource_type, args.props), {}))
    if not field and not keys:
        return None
    props = _stored(args.props)
    new = {k: v for k, v in props.items() if not (field and k == "metadataStartupScript")}
    if keys and args.resource_type in VM_TYPES:
        new["metadata"] = _without(props["metadata"], keys)
    elif keys:
        outer, inner = NESTED_METADATA[args.resource_type]
        block = _stored(props[outer])
        secret = isinstance(block, Secret)
        nested = dict(_stored(block.value) if secret else block)
        nested[inner] = _without(nested[inner], keys)
        new[outer] = Secret(nested) if secret else nested
    return new


no_instance_startup_scripts = ResourceValidationPolicy(
    name="no-instance-startup-scripts",
    description="No VM, instance template, MIG or per-instance config may carry a startup, shutdown or "
                "user-data script: the fleet's only boot script is the project-level `startup-script`. At the "
                "`remediate` level the keys are removed before they reach the provider.",
    validate=_instance_scripts,
    remediate=_strip_instance_scripts,
)


def _key(item: Any) -> Any:
    """A ProjectMetadataItem's key as the guest agent reads it (surrounding whitespace dropped), or _NOT_KNOWN."""
    key = _value(item.props, "key")
    return key if key is _NOT_KNOWN else str(key or "").strip()


def boot_path_unknowns(resources: Sequence[Any]) -> list[tuple[str, str, str]]:
    """(resource name, urn, what) for each project- or zone-level boot-path resource a rule could not judge at
    preview: an item whose key is not known (it may be a second startup-script, or a shutdown-script), the
    startup-script item's value (its guards and tuning), zonal metadata not known. preview-unknowns reports them."""
    found = []
    for r in resources:
        if r.resource_type == PROJECT_METADATA_ITEM:
            key = _key(r)
            if key is _NOT_KNOWN:
                found.append((r.name, r.urn, "one-project-startup-script did not judge this item at preview: its "
                              "key is not known (it may be a second startup-script, or another script key)"))
            elif key == pilot.MetadataKey.STARTUP_SCRIPT and _value(r.props, "value") is _NOT_KNOWN:
                found.append((r.name, r.urn, "startup-script-guarded did not judge this item at preview: its value "
                              "is not known (its guards and tuning cannot be read)"))
        elif r.resource_type == INSTANCE_SETTINGS and _value(r.props, "metadata") is _NOT_KNOWN:
            found.append((r.name, r.urn, "one-project-startup-script did not judge this zone's metadata at preview: "
                          "it is not known (it may carry a startup-script that overrides the project's)"))
    return found


def _one_project_script(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    # an item whose key is not known is set aside (preview-unknowns names it); every other resource is judged
    keyed = [(r, _key(r)) for r in args.resources if r.resource_type == PROJECT_METADATA_ITEM]
    items = [r for r, key in keyed if key == pilot.MetadataKey.STARTUP_SCRIPT]
    maybe = [r for r, key in keyed if key is _NOT_KNOWN]
    for r in args.resources:
        if r.resource_type == PROJECT_METADATA:
            report_violation(
                f"{r.name} is a gcp.compute.ProjectMetadata resource: it owns the whole project metadata and "
                "deletes every key it does not declare (SSH keys, OS Login settings, other teams' keys). Use one "
                "gcp.compute.ProjectMetadataItem per key.", r.urn)
    # a stack that makes no VM (a monitoring stack reading the fleet's outputs) needs no script of its own
    if not items and not maybe and next(effective_vms(args.resources), None) is not None:
        report_violation("No ProjectMetadataItem with key 'startup-script': the hosts would boot without the "
                         "fleet's boot path (no tuning, no supervisor).", None)
    for r, key in keyed:
        # the guest agent runs every script key, not startup-script alone: startup-script-url beside it,
        # shutdown-script* at every stop, user-data through cloud-init
        if isinstance(key, str) and key and key != pilot.MetadataKey.STARTUP_SCRIPT and script_keys({key: ""}):
            report_violation(f"{r.name} sets the project-level {key}: the guest agent runs it on every VM beside "
                             "the fleet's one startup-script (or at every stop). Remove it.", r.urn)
    for r in args.resources:
        if r.resource_type == INSTANCE_SETTINGS:
            zonal = known(lambda r=r: r.props.get("metadata"))
            zonal_items = known(lambda z=zonal: z.get("items")) if isinstance(zonal, Mapping) else None
            keys = script_keys(zonal_items) if isinstance(zonal_items, Mapping) else []
            if keys:
                report_violation(f"{r.name} sets {', '.join(keys)} as zone-level metadata "
                                 f"({known(lambda r=r: r.props.get('zone'), 'a zone not known at preview')}): "
                                 "zonal metadata overrides the project's for every VM in that zone, so the fleet's "
                                 "startup-script would not be the one that runs there. Remove it.", r.urn)
    # one item per project: the project is the item's own, else its provider's (two projects may each have one);
    # an item whose project is not known may be in any of them
    by_project: dict[str, list[Any]] = {}
    for item in items:
        by_project.setdefault(project_of(item), []).append(item)
    unplaced = by_project.pop("", [])
    reported: set[str] = set()
    for project in by_project or [""]:
        together = sorted(by_project.get(project, []) + unplaced, key=lambda r: r.urn)  # registered in any order
        for extra in together[1:]:
            if extra.urn not in reported:
                reported.add(extra.urn)
                report_violation(f"{extra.name} is a second project-level 'startup-script' item "
                                 f"{f'in project {project} ' if project else ''}({len(together)} in all): exactly "
                                 "one may exist per project, or deploys fight over the value.", extra.urn)
    if items and not unplaced:  # an item whose project is not known may be in any VM's project
        with_script = set(by_project)
        # an item whose key is not known may be the script of its project (of any, when that is not known either)
        maybe_projects = {project_of(m) for m in maybe}
        for vm in effective_vms(args.resources):
            if "" in maybe_projects or vm.project in maybe_projects:
                continue
            if vm.role in (pilot.ROLE_RENDEZVOUS, pilot.ROLE_SWARM) and vm.project and vm.project not in with_script:
                report_violation(f"{vm.name} is a fleet VM in project {vm.project}, which has no 'startup-script' "
                                 f"item (the stack's are in {', '.join(sorted(with_script))}): it would boot "
                                 "without the fleet's boot path.", vm.urn)


one_project_startup_script = StackValidationPolicy(
    name="one-project-startup-script",
    description="Exactly one ProjectMetadataItem with key `startup-script`, and no ProjectMetadata resource.",
    validate=_one_project_script,
)


def _guarded(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != PROJECT_METADATA_ITEM:
        return
    key = _value(args.props, "key")
    value = _value(args.props, "value")
    if key is _NOT_KNOWN or str(key or "").strip() != pilot.MetadataKey.STARTUP_SCRIPT or value is _NOT_KNOWN:
        return  # a key or value not known at preview: preview-unknowns names the item, `fleet plan --up` judges it
    missing = missing_guards(str(value or ""))
    if missing:
        report_violation(f"The project startup-script lacks: {'; '.join(missing)}. Without them a reboot can "
                         "spawn a second fleet or hit the PID, file and socket limits the seed fleet hit.", None)


startup_script_guarded = ResourceValidationPolicy(
    name="startup-script-guarded",
    description="The project startup-script carries the idempotency guard (flock, once per boot) and the "
                "kernel and unit limit tuning the fleet relies on.",
    validate=_guarded,
)
