"""Day two, as a controller's reconcile loop: the desired state is a Config (what the metadata asks), the observed
state what the supervisor lists and reaps (supervisor.py), and the main loop alone reconciles the one to the other.

The watcher thread long-polls the instance attributes (wait_for_change with the last ETag), checks them with the
boot path's own `settings`, installs a new daemon version, and hands the main loop what it found through the
supervisor's inbox, a queue (`Converge`: a config to converge to; `Report`: a refusal to show, or that a refusal is
history). It keeps its own state (`AttributeWatch`) and writes nothing the main loop owns; the main loop drains the
inbox at the start of each tick (`take_changes`). A new target starts or stops agents at the paced speed; what
changes an agent's command line or environment rolls (rollout.py); pacing applies to the next starts. What it
converges to is written back to the config file. A second watcher follows the project's startup script: a new
supervisor in it is upgrade.py's, handed over the same way (`Release`)."""

from __future__ import annotations

import dataclasses
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pilot_supervisor import upgrade
from pilot_supervisor.attributes import (
    AttributesError,
    fetch_attributes,
    fetch_instance_value,
    fetch_project_value,
    settings,
)
from pilot_supervisor.config import Config
from pilot_supervisor.contract import key
from pilot_supervisor.handover import Converge, Preempted, Report, hand_over
from pilot_supervisor.install import InstallError, install_daemon
from pilot_supervisor.journal import log
from pilot_supervisor.rollout import ROLLED_FIELDS, Rollout

if TYPE_CHECKING:
    from pilot_supervisor.supervisor import Supervisor


# At most this many watch requests a second, sustained, whatever the metadata server does (one that answers at once
# with a new ETag every time, or the same ETag with other content, would otherwise be asked in a tight loop).
WATCH_REQUESTS_PER_SECOND = 2.0
# The watcher threads, by the name their faults and journal events carry: what the main loop keeps alive.
WATCHERS = ("metadata-watch", "script-watch", "preempt-watch")


@dataclass
class AttributeWatch:
    """The attributes watcher's own state: what the attributes last asked for, and the refusal it last said."""

    wanted: dict[str, Any] | None = None
    refused: str = ""


def watch(sup: Supervisor) -> None:
    """The attributes' watcher thread (see `watching`)."""
    state = AttributeWatch()
    watching(sup, WATCHERS[0], lambda etag, wait: fetch_attributes(sup.config.metadata_url, etag, wait),
             lambda attributes: consider(sup, state, attributes))


def watch_script(sup: Supervisor) -> None:
    """The project startup script's watcher thread: a new supervisor in it (upgrade.py)."""
    name, state = key("STARTUP_SCRIPT"), upgrade.ReleaseWatch()
    watching(sup, WATCHERS[1], lambda etag, wait: fetch_project_value(sup.config.metadata_url, name, etag, wait),
             lambda script: upgrade.consider(sup, state, script))


def watch_preempted(sup: Supervisor) -> None:
    """The preemption watcher thread: Compute Engine's `preempted` value (TRUE once a Spot VM is being preempted,
    about 30 s before its power-off), long-polled like the attributes; a standard VM's stays FALSE."""
    def act(value: str) -> None:
        if value.upper() == "TRUE":
            hand_over(sup, Preempted())

    watching(sup, WATCHERS[2], lambda etag, wait: fetch_instance_value(sup.config.metadata_url, "preempted", etag,
                                                                      wait), act)


def watching(sup: Supervisor, name: str, fetch: Callable[[str, int], tuple[Any, str]],
             act: Callable[[Any], None]) -> None:
    """A watcher thread. Never touches agents itself, and never ends but with the supervisor: every failure of a
    request (connection, HTTP, a cut-off or oversized answer, bad JSON) or of acting on it is logged (NAME-failed,
    fault NAME) and retried with backoff."""
    etag, delay, last, throttled = "", 1.0, 0.0, False
    gap = 1.0 / WATCH_REQUESTS_PER_SECOND
    while not sup.stopping.is_set():
        early = last + gap - time.monotonic()
        if early > 0:
            if not throttled:  # said once per run of quick answers, not once per request
                log(f"{name}-throttled", requests_per_second=WATCH_REQUESTS_PER_SECOND)
                throttled = True
            sup.stopping.wait(early)
        last = time.monotonic()
        try:
            value, etag = fetch(etag, sup.config.watch_seconds if etag else 0)
            if time.monotonic() - last > gap:
                throttled = False  # the server held the request: it waits for changes as it should
            act(value)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the watch goes on (and says so)
            sup.faults.record(name, exc)
            log(f"{name}-failed", error=f"{type(exc).__name__}: {exc}", retry_in_seconds=delay)
            etag = ""  # ask afresh: a cut-off answer may have carried a wrong ETag
            sup.stopping.wait(delay)
            delay = min(delay * 2, 60.0)
            continue
        sup.faults.clear(name)
        delay = 1.0
        if not etag:  # a metadata server without ETags cannot hold a request: poll gently instead
            sup.stopping.wait(sup.config.tick_seconds * 5)


def consider(sup: Supervisor, state: AttributeWatch, attributes: dict[str, str]) -> None:
    """The watcher's part: check the attributes, install a new version, hand the result to the main loop. It reads
    the config the loop runs (replaced whole, never changed in place) and writes only its own STATE."""
    try:
        wanted = settings(attributes)
    except AttributesError as exc:
        if str(exc) != state.refused:
            log("attributes-refused", problem=str(exc), keeping_version=sup.config.version)
            hand_over(sup, Report({"state": "refused", "reason": str(exc)}))
        state.refused = str(exc)
        return
    state.refused = ""
    hand_over(sup, Report(None))  # the operator put it right: a refusal shown is history
    if wanted == state.wanted:
        return
    state.wanted = wanted
    current = sup.config
    daemon = current.daemon
    if (wanted["version"], wanted["daemon_flags"], wanted["wheel_sha256"]) != \
            (current.version, current.daemon_flags, current.wheel_sha256):
        if not current.install_dir:
            log("version-refused", version=wanted["version"], reason="no install_dir to install it into")
            return
        log("version-installing", version=wanted["version"], wheel=wanted["wheel_url"])
        try:
            daemon = str(install_daemon(current.install_dir, wanted["version"], wanted["wheel_url"],
                                        wanted["wheel_sha256"], wanted["daemon_flags"]))
        except InstallError as exc:
            log("version-refused", version=wanted["version"], reason=str(exc), keeping_version=current.version)
            hand_over(sup, Report({"state": "refused", "version": wanted["version"], "reason": str(exc)}))
            return
        log("version-installed", version=wanted["version"], daemon=daemon)
    hand_over(sup, Converge(current.with_settings(wanted, daemon)))


def take_changes(sup: Supervisor, now: float) -> None:
    """The main loop's part: everything the watchers handed over since the last tick, in order; of several configs,
    the latest is converged to."""
    new: Config | None = None
    while True:
        try:
            change = sup.inbox.get_nowait()
        except queue.Empty:
            break
        if isinstance(change, Converge):
            new = change.config
        elif isinstance(change, Report):
            if change.change is not None:
                sup.last_change = change.change
            elif sup.last_change.get("state") == "refused":
                sup.last_change = {}
        elif isinstance(change, Preempted):
            sup.preempt(now)
        else:
            sup.upgrade = change.upgrade
    if new is not None:
        converge(sup, new, now)


def converge(sup: Supervisor, new: Config, now: float) -> None:
    if new == sup.config or sup.stopping.is_set():
        return
    old = sup.config
    changed = {f.name: [getattr(old, f.name), getattr(new, f.name)] for f in dataclasses.fields(Config)
               if getattr(old, f.name) != getattr(new, f.name) and f.name not in ("wheel_url", "wheel_sha256")}
    sup.config = new
    for bucket in sup.buckets:
        bucket.refit(new.new_registrations_per_minute, new.bucket_capacity)
    if new.round_delay_seconds != old.round_delay_seconds:
        # the next round is due one new delay after the last one began, not one old delay (an hour's delay put
        # right must not hold every start, crash restarts and rollout restarts included, for that hour)
        sup.next_round = min(sup.next_round, sup.last_round + new.round_delay_seconds)
    if new.target_agents > old.target_agents:
        sup.started = now  # a raised target ramps up like a start-up: healthy while on schedule
    log("reconciling", changes=changed)
    if any(getattr(old, name) != getattr(new, name) for name in ROLLED_FIELDS):
        reason = (f"version {old.version} -> {new.version}" if old.version != new.version else
                  ", ".join(name for name in ROLLED_FIELDS if getattr(old, name) != getattr(new, name)))
        previous = sup.rollout.previous if sup.rollout and not sup.rollout.reverting else old
        sup.rollout = Rollout(reason, previous, highest_first=new.base_udp_port > old.base_udp_port)
        log("rollout-started", reason=reason, batch=sup.batch_size)
    sup.persist()
