"""The boot path's rules: one project-level startup script, guarded and tuned; none on any VM."""

from __future__ import annotations

import re
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
from . import shell
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
from .network import project_of
from .vms import effective_vms

# The guards that stop a second fleet (one run at a time, at most once per boot) must run, not merely appear: the
# script is read by a bash grammar (shell.py) and starts with a fixed prologue, checked statement by statement (see
# `prologue_problems`); a prologue that runs first and unconditionally cannot be skipped by an early exit, a
# condition or a heredoc. The kernel tuning must be applied (`sysctl -p`, ...) by a command that runs
# unconditionally on the boot path; its keys, and the unit limits, are data the script writes: the keys must be in
# the script (comments aside), the limits in what the boot path runs.
TUNING_KEYS = {
    "kernel.pid_max tuning": r"kernel\.pid_max",
    "fs.file-max tuning": r"fs\.file-max",
    "fs.nr_open tuning": r"fs\.nr_open",
    "socket buffer tuning (net.core.rmem_max)": r"net\.core\.rmem_max",
    "socket buffer tuning (net.core.wmem_max)": r"net\.core\.wmem_max",
    "UDP memory tuning (net.ipv4.udp_mem)": r"net\.ipv4\.udp_mem",
    "reserved agent ports (net.ipv4.ip_local_reserved_ports)": r"net\.ipv4\.ip_local_reserved_ports",
}
UNIT_LIMITS = {"TasksMax on the unit that owns the agents": "TasksMax=",
               "LimitNOFILE on the unit that owns the agents": "LimitNOFILE="}
# `sysctl` arguments that apply settings (a file, the system's files, or one key)
SYSCTL_APPLIES = ("-p", "--load", "--system", "-w", "--write")


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
    if not items and not maybe:
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


def code_of(script: str) -> str:
    """The script without comment lines, so a requirement mentioned only in a comment does not count."""
    return "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))


# The prologue, statement by statement: strict mode first; then only plain assignments and `mkdir -p` until the
# lock (`exec N>FILE` directly followed by `flock N`); the once-per-boot marker named from the boot id; and the `if`
# that leaves when the marker exists. An assignment or argument there runs no command (`$(mktemp -d)` would give
# every run its own lock and marker), so the lock's and the marker's paths are known from the text, and both must
# lie in /run, a tmpfs that survives nothing. The lock is never released on the boot path after.
EXPANSION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
FIXED_DIR = "/run/"


def expand(text: str, known: Mapping[str, str]) -> str:
    """TEXT with its ${NAME} and ${NAME:-default} expansions as the prologue leaves them on a VM: the prologue's
    own variables, and the default (or nothing) for anything else (test seams are unset there)."""
    return EXPANSION.sub(lambda m: known.get(m.group(1), m.group(2) or ""), text)


def _unquoted(node: Any) -> str:
    value = shell.text(node)
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'" else value


def _runs_nothing(node: Any) -> bool:
    return not any(True for _ in shell.substitutions(node)) and node.type != "command_substitution"


def prologue_problems(script: str, path: shell.BootPath | None = None) -> list[str]:
    """What keeps the script's first statements from being the guarding prologue (empty when they are)."""
    path = path or shell.BootPath.of(script)
    code = shell.statements(path.root)
    first = code[0] if code else None
    if first is None or first.type != "command" or [shell.literal(w) for w in (
            shell.command_name(first), *shell.arguments(first))] != ["set", "-euo", "pipefail"]:
        return ["strict mode (set -euo pipefail) as its first command"]
    i, known = 1, {}
    while i < len(code):
        node = code[i]
        if node.type == "variable_assignment" and _runs_nothing(node):
            name, value = node.child_by_field_name("name"), node.child_by_field_name("value")
            known[shell.text(name)] = expand(_unquoted(value), known) if value is not None else ""
        elif not (node.type == "command" and shell.literal(shell.command_name(node)) == "mkdir" and
                  [shell.literal(a) for a in shell.arguments(node)][:1] == ["-p"] and _runs_nothing(node)):
            break
        i += 1
    lock = _lock(code[i]) if i < len(code) else None
    after = code[i + 1] if i + 1 < len(code) else None
    if lock is None or after is None or after.type != "command" or [shell.literal(w) for w in (
            shell.command_name(after), *shell.arguments(after))] != ["flock", lock[0]]:
        return ["a lock against concurrent runs (`exec N>FILE.lock` then `flock N`) before any other command, "
                "after only plain assignments (running no command) and `mkdir -p`"]
    where = expand(lock[1], known)
    if not where.startswith(FIXED_DIR):
        return [f"a lock at a fixed path in {FIXED_DIR} (it is {where!r}): a lock elsewhere may outlive a reboot or "
                "differ between runs"]
    i += 2
    marker = _marker(code[i]) if i < len(code) else None
    if marker is None:
        return ["a once-per-boot marker named from the boot id (NAME=\"/run/...$(<boot_id file)\"), right after the "
                "lock"]
    name, prefix = marker
    if not expand(prefix, known).startswith(FIXED_DIR):
        return [f"a once-per-boot marker at a fixed path in {FIXED_DIR} (it is {expand(prefix, known)!r})"]
    leave = code[i + 1] if i + 1 < len(code) else None
    if leave is None or not _leaves_on(leave, name, path):
        return [f'the block that leaves when the marker exists (if [[ -e "${{{name}}}" ]]; then ... exit 0 ... fi), '
                "its exit reached whatever else the block does"]
    released = _released(path, lock[0], code[i - 2])
    if released:
        return [f"the lock held for the whole boot path (it is released by `{released}`, so a second run can start "
                "a second fleet)"]
    return []


def _lock(node: Any) -> tuple[str, str] | None:
    """(descriptor, path) of `exec N>FILE.lock`, the path running no command."""
    if node.type != "redirected_statement":
        return None
    body, redirects = node.child_by_field_name("body"), node.children_by_field_name("redirect")
    if body is None or shell.literal(shell.command_name(body)) != "exec" or shell.arguments(body) or \
            len(redirects) != 1 or redirects[0].type != "file_redirect":
        return None
    redirect = redirects[0]
    fd = redirect.child_by_field_name("descriptor")
    destination = redirect.child_by_field_name("destination")
    operator = [c.type for c in redirect.children if not c.is_named]
    if fd is None or destination is None or operator != [">"] or not _runs_nothing(destination):
        return None
    where = _unquoted(destination)
    return (shell.text(fd), where) if where.endswith(".lock") else None


def _marker(node: Any) -> tuple[str, str] | None:
    """(name, the path before the boot id) of NAME="PATH$(<BOOT_ID_FILE)", which runs no other command."""
    if node.type != "variable_assignment":
        return None
    value = node.child_by_field_name("value")
    if value is None or value.type != "string":
        return None
    parts = value.named_children
    subs = [p for p in parts if p.type == "command_substitution"]
    if len(subs) != 1 or parts[-1] is not subs[0] or len(subs[0].named_children) != 1:
        return None
    read = subs[0].named_children[0]
    if read.type != "file_redirect" or "boot_id" not in shell.text(read) or not _runs_nothing(read):
        return None
    prefix = "".join(shell.text(p) for p in parts[:-1])
    if any(p.type not in ("string_content", "expansion", "simple_expansion") for p in parts[:-1]):
        return None
    return shell.text(node.child_by_field_name("name")), prefix


def _leaves_on(node: Any, name: str, path: shell.BootPath) -> bool:
    """`if [[ -e "${NAME}" ]]; then ... fi`: the marker alone in the condition, no other branch, and an exit the
    branch reaches whatever it does before (not one nested under a condition of its own)."""
    if node.type != "if_statement" or any(c.type in ("elif_clause", "else_clause") for c in node.children):
        return False
    condition = [c for c in node.children[1:] if c.is_named and c.type != "comment"][:1]
    test = condition[0] if condition else None
    if test is None or test.type != "test_command" or shell.text(test).split() not in (
            ["[[", "-e", f'"${{{name}}}"', "]]"], ["[[", "-e", f'"${name}"', "]]"]):
        return False
    probe = shell.BootPath(path.root, path.functions)
    return probe._body(shell.branch(node)) == "exit" and any(
        [shell.literal(a) for a in shell.arguments(c)] in ([], ["0"]) for c in probe.ran("exit"))


def _released(path: shell.BootPath, descriptor: str, lock: Any) -> str:
    """The boot-path command that releases the lock's descriptor or points it elsewhere (`flock -u N`,
    `exec N>&-`, another `exec N>...`), if any."""
    for command in path.ran("flock"):
        words = [shell.literal(a) for a in shell.arguments(command)]
        if descriptor in words and any(w in ("-u", "--unlock") for w in words):
            return shell.text(command)
    for statement in path.statements:
        body = statement.child_by_field_name("body") if statement.type == "redirected_statement" else None
        if body is None or statement == lock or shell.literal(shell.command_name(body)) != "exec":
            continue
        for redirect in statement.children_by_field_name("redirect"):
            fd = redirect.child_by_field_name("descriptor")
            if fd is not None and shell.text(fd) == descriptor:
                return shell.text(statement)
    return ""


def missing_guards(script: str) -> list[str]:
    path = shell.BootPath.of(script)
    code = code_of(script)
    applied = [c for c in path.ran("sysctl") if any(
        (w := shell.literal(a)) and (w in SYSCTL_APPLIES or (w.startswith("-") and not w.startswith("--")
                                                            and ("p" in w or "w" in w)))
        for a in shell.arguments(c))]
    written = path.written_text()
    return [*prologue_problems(script, path),
            *([] if applied else ["the kernel tuning applied (`sysctl -p FILE`, `--system` or `-w`) by a command the "
                                  "boot path runs unconditionally, not only written or in a function it may skip"]),
            *(f"{what} (in the script, comments aside)" for what, pattern in TUNING_KEYS.items()
              if not re.search(pattern, code)),
            *(f"{what}, written on the boot path (in code that runs, not only in a function nothing calls)"
              for what, needle in UNIT_LIMITS.items() if needle not in written)]


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
