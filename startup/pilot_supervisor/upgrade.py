"""Day two for the supervisor itself: a new pilot-fleet release reaches a running host without a reboot and without
stopping an agent.

The script watcher long-polls the project's `startup-script` item (the one the program declares). When the
supervisor zipapp in it differs from the one running, it is staged beside the running one, with the VM contract of
the same script, and must read this host's config (its own `stop-budget` command) before anything else happens.
Then the main loop, once no rollout or config change is in flight, re-executes the supervisor in place with it
(execv): the same PID, so the unit, the agents' parent and their cgroup stay as they are, and the new program finds
the running agents by its usual scan and reaps them as before. The new program installs itself where the unit
starts it from, so a restart or the unit's stop runs it too.

A staged zipapp that fails its check is refused (journal and status) and tried again only when the script changes
again. What a new script changes besides the supervisor (the units, kernel tuning, users) waits for the next boot,
as before: the status says so."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pilot_supervisor import probes
from pilot_supervisor.contract import FILE_NAME
from pilot_supervisor.handover import Release, hand_over
from pilot_supervisor.journal import log

if TYPE_CHECKING:
    from pilot_supervisor.supervisor import Supervisor

# How the startup script carries the zipapp and the contract: heredocs the renderer fills (startup/common.sh).
ZIPAPP_HEREDOC = "PILOT_SUPERVISOR_PYZ"
CONTRACT_HEREDOC = "PILOT_VM_CONTRACT"
ZIPAPP_NAME = "pilot-supervisor.pyz"
RELEASES = "releases"  # beside the running zipapp: <digest>/pilot-supervisor.pyz and its contract.json
CHECK_SECONDS = 60.0


class UpgradeError(ValueError):
    """A startup script whose supervisor cannot be taken: the reason names what is wrong."""


def _heredoc(script: str, name: str) -> str:
    start = script.find(f"<<'{name}'\n")
    end = script.find(f"\n{name}\n", start)
    if start < 0 or end < 0:
        raise UpgradeError(f"the startup script carries no {name} block")
    return script[script.index("\n", start) + 1:end]


def parts(script: str) -> tuple[bytes, bytes]:
    """The supervisor zipapp and its VM contract, as the startup script carries them."""
    try:
        zipapp = base64.b64decode("".join(_heredoc(script, ZIPAPP_HEREDOC).split()), validate=True)
    except binascii.Error as exc:
        raise UpgradeError(f"the supervisor zipapp in the startup script is not base64: {exc}") from None
    try:
        with zipfile.ZipFile(io.BytesIO(zipapp)) as archive:
            if "__main__.py" not in archive.namelist():
                raise UpgradeError("the supervisor zipapp in the startup script has no __main__.py")
    except zipfile.BadZipFile as exc:
        raise UpgradeError(f"the supervisor zipapp in the startup script is not a zip archive: {exc}") from None
    contract = _heredoc(script, CONTRACT_HEREDOC)
    try:
        document = json.loads(contract)
    except ValueError as exc:
        raise UpgradeError(f"the VM contract in the startup script is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), dict):
        raise UpgradeError("the VM contract in the startup script is not one")
    return zipapp, contract.encode()


def digest(zipapp: bytes) -> str:
    return hashlib.sha256(zipapp).hexdigest()


def running_zipapp() -> Path:
    return Path(sys.argv[0]).resolve()


def lib_dir() -> Path:
    """Where the unit starts the supervisor from (pilot-supervisor.pyz, contract.json, releases/): the running
    zipapp's directory, or the one above releases/ when it runs a staged release."""
    running = running_zipapp()
    return running.parent.parent.parent if running.parent.parent.name == RELEASES else running.parent


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def stage(zipapp: bytes, contract: bytes) -> Path:
    """The zipapp and its contract under releases/<digest>/ beside the running zipapp; the staged zipapp's path."""
    home = lib_dir() / RELEASES / digest(zipapp)
    home.mkdir(parents=True, exist_ok=True)
    _write(home / FILE_NAME, contract)
    _write(home / ZIPAPP_NAME, zipapp)
    return home / ZIPAPP_NAME


def check(staged: Path, config_path: Path) -> str:
    """"" if the staged supervisor reads this host's config (and its contract); else why not, in one line."""
    try:
        done = probes.run([sys.executable, str(staged), "stop-budget", "--config", str(config_path)],
                          timeout=CHECK_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"its check could not run: {type(exc).__name__}: {exc}"
    if done.returncode == 0:
        return ""
    said = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return f"its check exited {done.returncode}: {said[-1][:300] if said else 'without a word'}"


@dataclass
class ReleaseWatch:
    """The script watcher's own state: the release it last handed over (staged or refused)."""

    last: dict[str, str] = field(default_factory=dict)


def consider(sup: Supervisor, state: ReleaseWatch, script: str) -> None:
    """The script watcher's part: a new supervisor in the project's startup script is staged and checked, and
    handed to the main loop (handover.Release: staged, which `due` then finds; or refused, said once). It reads what
    never changes while this program runs (its own digest, its config file's path) and writes only its own STATE."""
    if not script:  # the project has no startup-script item (or it is not this fleet's to read)
        return
    try:
        zipapp, contract = parts(script)
    except UpgradeError as exc:
        _refused(sup, state, "", str(exc))
        return
    wanted = digest(zipapp)
    if wanted == sup.supervisor_digest:
        if state.last.get("state") == "refused":  # the operator went back to the running release
            state.last = {}
            hand_over(sup, Release({}))
        return
    if wanted == state.last.get("digest"):
        return  # staged already, or refused already: tried again only when the script changes again
    staged = stage(zipapp, contract)
    problem = check(staged, sup.config_path) if sup.config_path else "no config file to check it against"
    if problem:
        _refused(sup, state, wanted, problem)
        return
    log("supervisor-upgrade-staged", digest=wanted[:16], running=sup.supervisor_digest[:16], path=str(staged))
    state.last = {"state": "staged", "digest": wanted, "path": str(staged)}
    hand_over(sup, Release(dict(state.last)))


def _refused(sup: Supervisor, state: ReleaseWatch, wanted: str, problem: str) -> None:
    refusal = {"state": "refused", "digest": wanted, "reason": problem}
    if state.last != refusal:
        log("supervisor-upgrade-refused", digest=wanted[:16], problem=problem, keeping=sup.supervisor_digest[:16])
        state.last = refusal
        hand_over(sup, Release(dict(refusal)))


def due(sup: Supervisor) -> Path | None:
    """The staged supervisor to run now: one is staged and nothing is in flight that a restart of the program
    would lose (a rollout's batches, a change handed over but not yet taken)."""
    if sup.upgrade.get("state") != "staged" or not sup.inbox.empty():
        return None
    if sup.rollout is not None or sup.stopping.is_set():
        return None
    return Path(sup.upgrade["path"])


def execute(sup: Supervisor, staged: Path) -> None:
    """Become the staged supervisor: the same process (PID, children, cgroup), the new program. Returns only if it
    could not be run; then it is refused, and this supervisor goes on."""
    wanted = sup.upgrade.get("digest", "")
    log("supervisor-upgrading", to=wanted[:16], running=sup.supervisor_digest[:16],
        agents=sum(len(pids) for pids in sup.running.values()))
    sys.stdout.flush()
    try:
        os.execv(sys.executable, [sys.executable, str(staged), *sys.argv[1:]])
    except OSError as exc:  # the main loop's own: it owns `upgrade`
        problem = f"could not run it: {exc}"
        log("supervisor-upgrade-refused", digest=wanted[:16], problem=problem, keeping=sup.supervisor_digest[:16])
        sup.upgrade = {"state": "refused", "digest": wanted, "reason": problem}


def settle(sup: Supervisor) -> None:
    """At start: the running zipapp's digest; if it runs from releases/ (an upgrade), it installs itself and its
    contract where the unit starts the supervisor from, and the older staged releases go."""
    running, lib = running_zipapp(), lib_dir()
    sup.supervisor_digest = digest(running.read_bytes())
    if lib == running.parent:
        return
    with sup.faults.guard("supervisor-install"):
        _write(lib / FILE_NAME, (running.parent / FILE_NAME).read_bytes())
        _write(lib / ZIPAPP_NAME, running.read_bytes())
        for old in (lib / RELEASES).iterdir():
            if old != running.parent:
                shutil.rmtree(old, ignore_errors=True)
        log("supervisor-upgraded", digest=sup.supervisor_digest[:16], installed=str(lib / ZIPAPP_NAME))
