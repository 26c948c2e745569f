"""Day two: the watcher thread long-polls the instance attributes (wait_for_change with the last ETag), checks them
with the boot path's own `settings`, installs a new daemon version, and hands the main loop the config to converge
to; the main loop alone applies it (`take_pending`). A new target starts or stops agents at the paced speed; what
changes an agent's command line or environment rolls (rollout.py); pacing applies to the next starts. What it
converges to is written back to the config file. A second watcher follows the project's startup script: a new
supervisor in it is upgrade.py's."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from pilot_supervisor import upgrade
from pilot_supervisor.attributes import AttributesError, fetch_attributes, fetch_project_value, settings
from pilot_supervisor.config import Config
from pilot_supervisor.contract import key
from pilot_supervisor.install import InstallError, install_daemon
from pilot_supervisor.journal import log
from pilot_supervisor.rollout import ROLLED_FIELDS, Rollout

if TYPE_CHECKING:
    from pilot_supervisor.supervisor import Supervisor


# At most this many watch requests a second, sustained, whatever the metadata server does (one that answers at once
# with a new ETag every time, or the same ETag with other content, would otherwise be asked in a tight loop).
WATCH_REQUESTS_PER_SECOND = 2.0


def watch(sup: Supervisor) -> None:
    """The attributes' watcher thread (see `watching`)."""
    watching(sup, "metadata-watch", lambda etag, wait: fetch_attributes(sup.config.metadata_url, etag, wait),
             lambda attributes: consider(sup, attributes))


def watch_script(sup: Supervisor) -> None:
    """The project startup script's watcher thread: a new supervisor in it (upgrade.py)."""
    name = key("STARTUP_SCRIPT")

    def act(script: str) -> None:
        upgrade.consider(sup, script)
        nudge(sup)  # a staged release is taken up at once, not at the next tick

    watching(sup, "script-watch", lambda etag, wait: fetch_project_value(sup.config.metadata_url, name, etag, wait),
             act)


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


def consider(sup: Supervisor, attributes: dict[str, str]) -> None:
    try:
        wanted = settings(attributes)
    except AttributesError as exc:
        if str(exc) != sup.refused_attributes:
            log("attributes-refused", problem=str(exc), keeping_version=sup.config.version)
            sup.last_change = {"state": "refused", "reason": str(exc)}
        sup.refused_attributes = str(exc)
        return
    sup.refused_attributes = ""
    if sup.last_change.get("state") == "refused":  # the operator put it right: the refusal is history
        sup.last_change = {}
    if wanted == sup.wanted:
        return
    sup.wanted = wanted
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
            sup.last_change = {"state": "refused", "version": wanted["version"], "reason": str(exc)}
            return
        log("version-installed", version=wanted["version"], daemon=daemon)
    with sup.lock:
        sup.pending = current.with_settings(wanted, daemon)
    nudge(sup)


def nudge(sup: Supervisor) -> None:
    """Wake the main loop now (a pending change, a child's exit) instead of at its next tick."""
    if sup.wakeup_fd is not None:
        with suppress(BlockingIOError, OSError):
            os.write(sup.wakeup_fd, b"!")


def take_pending(sup: Supervisor, now: float) -> None:
    with sup.lock:
        new, sup.pending = sup.pending, None
    if new is None or new == sup.config or sup.stopping.is_set():
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
