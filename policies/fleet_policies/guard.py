"""The guard rule's reading of a startup script (startup-script-guarded, startup_scripts.py): the prologue that
stops a second fleet, statement by statement, and what the boot path runs unconditionally (shell.py), for the
kernel tuning and the unit limits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import shell

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
    return probe.run(shell.branch(node)) == "exit" and any(
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
