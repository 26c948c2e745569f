"""Day two: the watcher thread long-polls the instance attributes (wait_for_change with the last ETag), checks them
with the boot path's own `settings`, installs a new daemon version, and hands the main loop the config to converge
to; the main loop alone applies it (`take_pending`). A new target starts or stops agents at the paced speed; what
changes an agent's command line or environment rolls (rollout.py); pacing applies to the next starts. What it
converges to is written back to the config file."""

from __future__ import annotations

import dataclasses
import os
from contextlib import suppress
from typing import TYPE_CHECKING

from pilot_supervisor.attributes import AttributesError, fetch_attributes, settings
from pilot_supervisor.config import Config
from pilot_supervisor.install import InstallError, install_daemon
from pilot_supervisor.journal import log
from pilot_supervisor.rollout import ROLLED_FIELDS, Rollout

if TYPE_CHECKING:
    from pilot_supervisor.supervisor import Supervisor


def watch(sup: Supervisor) -> None:
    """The watcher thread. Never touches agents itself."""
    etag, delay = "", 1.0
    while not sup.stopping.is_set():
        try:
            attributes, etag = fetch_attributes(sup.config.metadata_url, etag, sup.config.watch_seconds if etag else 0)
        except (OSError, ValueError) as exc:
            log("metadata-watch-failed", error=str(exc), retry_in_seconds=delay)
            sup.stopping.wait(delay)
            delay = min(delay * 2, 60.0)
            continue
        delay = 1.0
        consider(sup, attributes)
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
    sup.bucket.rate = new.new_registrations_per_minute / 60.0
    if new.target_agents > old.target_agents:
        sup.started = now  # a raised target ramps up like a start-up: healthy while on schedule
    log("reconciling", changes=changed)
    if any(getattr(old, name) != getattr(new, name) for name in ROLLED_FIELDS):
        reason = (f"version {old.version} -> {new.version}" if old.version != new.version else
                  ", ".join(name for name in ROLLED_FIELDS if getattr(old, name) != getattr(new, name)))
        previous = sup.rollout.previous if sup.rollout and not sup.rollout.reverting else old
        sup.rollout = Rollout(reason, previous)
        log("rollout-started", reason=reason, batch=sup.batch_size)
    sup.persist()
