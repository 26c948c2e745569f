"""The main loop: one supervisor per host (a lock), woken by agents' exits, changes and due rounds; each turn one
tick reconciles what runs with what the metadata asks; on SIGTERM the paced stop (mass deregistration floods the
registry), then KILL for what is left after the grace period. It keeps the watcher threads alive, and says when it
found one dead."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from pilot_supervisor import health, live, rolling, upgrade
from pilot_supervisor.agents import send_signal
from pilot_supervisor.attributes import preempted_now
from pilot_supervisor.config import Config
from pilot_supervisor.journal import log
from pilot_supervisor.supervisor import Supervisor

# However often children exit, at most this many ticks a second.
MIN_TICK_GAP_SECONDS = 0.05
# A loop that did not come round for this long (beyond its tick) was stopped or starved: a rollout batch's deadline
# does not count that time.
STOPPED_SECONDS = 5.0


def _watcher(sup: Supervisor, target: Callable[[Supervisor], None]) -> threading.Thread:
    thread = threading.Thread(target=target, args=(sup,), daemon=True, name=target.__name__)
    thread.start()
    return thread


def keep_watchers(sup: Supervisor, watchers: dict[str, threading.Thread]) -> None:
    """Restart a watcher thread that ended (it never should: every failure is retried inside it), and say so: the
    journal once, and /healthz red for this tick (sup.threads_down)."""
    dead = tuple(name for name, thread in watchers.items() if not thread.is_alive())
    for name in dead:
        log(f"{name}-died", restarting=True)
        watchers[name] = _watcher(sup, WATCH_TARGETS[name])
    sup.threads_down = dead


# each watcher thread by its name (live.WATCHERS), and what it runs
WATCH_TARGETS: dict[str, Callable[[Supervisor], None]] = dict(zip(live.WATCHERS, (live.watch, live.watch_script,
                                                                                  live.watch_preempted),
                                                                  strict=True))


def tick(sup: Supervisor) -> None:
    """One reconcile: take what the watchers handed over, reap, list, trim, kill what ignored SIGTERM, mark the
    registered, roll, start a paced round, report."""
    now = time.monotonic()
    live.take_changes(sup, now)
    sup.reap(now)
    if sup.batch_failure:
        if sup.rollout is not None:
            rolling.fail(sup, sup.batch_failure)
        sup.batch_failure = ""
    if now >= sup.next_scan:
        sup.running = sup.listing()
        sup.next_scan = now + sup.config.scan_seconds
        sup.fingerprints = {pid: fp for pid, fp in sup.fingerprints.items()
                            if any(pid in pids for pids in sup.running.values())}
    sup.trim()
    sup.escalate(now)
    sup.mark_registered()
    sup.recheck_pin(now)
    if sup.persist_pending:
        sup.persist()
    if not sup.stopping.is_set():
        rolling.roll(sup, now)
        # the round's clock is when it begins, not when the tick did: the listing, the reaping and the roll above
        # take time on a loaded host, and a round timed from the tick's start followed the last one's spawns by
        # less than the round delay
        sup.start_round(time.monotonic())
    sup.publish_view()
    health.report(sup, now)


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / "supervisor.lock", "w")  # noqa: SIM115 - held for the process lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"pilot-supervisor: another supervisor holds {run_dir / 'supervisor.lock'}") from None
    try:
        yield
    finally:
        handle.close()


def stop_all(sup: Supervisor) -> None:
    sup.stopping.set()
    c = sup.config
    if not sup.preempted_at and c.metadata_url and preempted_now(c.metadata_url):
        sup.preempt(time.monotonic())  # the power-off's SIGTERM came before the watcher saw the notice
    if sup.preempted_at:
        preemption_stop(sup)
        return
    sup.reap(time.monotonic())
    pids = [pid for _, pids in sorted(sup.listing().items(), reverse=True) for pid in pids]
    log("stopping", agents=len(pids), batch=c.stop_batch)
    for offset in range(0, len(pids), c.stop_batch):
        batch = pids[offset:offset + c.stop_batch]
        for pid in batch:
            send_signal(pid, signal.SIGTERM)
        log("stop-batch", agents=len(batch), left=len(pids) - offset - len(batch))
        time.sleep(c.stop_batch_delay_seconds)
        sup.reap(time.monotonic())
    deadline = time.monotonic() + c.stop_grace_seconds
    log("stopped", killed_after_grace=finish_stop(sup, deadline))
    health.report(sup, time.monotonic(), force=True)


def finish_stop(sup: Supervisor, deadline: float) -> int:
    """Wait for the agents sent SIGTERM to exit until DEADLINE, then SIGKILL what is left; how many were killed."""
    while time.monotonic() < deadline and sup.listing():
        sup.reap(time.monotonic())
        time.sleep(0.1)
    left = [pid for pids in sup.listing().values() for pid in pids]
    for pid in left:
        send_signal(pid, signal.SIGKILL)
    for _, proc in list(sup.children.values()):
        proc.wait()
    sup.children.clear()
    sup.running = {}
    sup.publish_view()
    return len(left)


def preemption_stop(sup: Supervisor) -> None:
    """Every agent gone within the preemption's deadline: SIGTERM spread evenly over preempt_spread_seconds (never
    the whole host in one instant), then SIGKILL for whatever still runs at preempt_stop_seconds after the notice.
    Identities stay on the state disk; the recreated VM starts them as known identities."""
    c = sup.config
    sup.reap(time.monotonic())
    pids = [pid for _, pids in sorted(sup.listing().items(), reverse=True) for pid in pids]
    began = time.monotonic()
    steps = max(1, int(c.preempt_spread_seconds / 0.25))
    per_step = -(-len(pids) // steps) if pids else 0
    for step in range(steps):
        for pid in pids[step * per_step:(step + 1) * per_step]:
            send_signal(pid, signal.SIGTERM)
        sup.reap(time.monotonic())
        if (step + 1) * per_step >= len(pids):
            break
        time.sleep(max(0.0, began + (step + 1) * 0.25 - time.monotonic()))
    killed = finish_stop(sup, sup.preempted_at + c.preempt_stop_seconds)
    log("preemption-stop", agents=len(pids), sigterm_seconds=round(c.preempt_spread_seconds, 1),
        all_gone_seconds=round(time.monotonic() - sup.preempted_at, 1), killed_at_deadline=killed)
    health.report(sup, time.monotonic(), force=True)


def reap_leftovers(config: Config) -> int:
    """The unit's ExecStopPost: agents its supervisor left behind (it was killed, crashed, or got SIGTERM before it
    could act) get the same paced stop, so the unit never ends with agents running. systemd's own kill of the
    unit's cgroup is not relied on: it can fail ("Failed to kill control group ..., ignoring"), and a stop that
    lands while the unit waits to restart would then leave every agent running with no supervisor."""
    with locked(Path(config.run_dir)):
        sup = Supervisor(config)
        left = sum(len(pids) for pids in sup.listing().values())
        if not left:
            return 0
        log("leftover-agents", agents=left)
        stop_all(sup)
    return 0


def run(config: Config, config_path: Path) -> int:
    with locked(Path(config.run_dir)):
        sup = Supervisor(config)
        sup.config_path = config_path
        upgrade.settle(sup)  # which supervisor this is; one just upgraded to installs itself for the unit
        # The loop sleeps in select() on a pipe that signals write to (set_wakeup_fd): an agent's exit (SIGCHLD)
        # or a stop request wakes it at once, so a rollout batch goes on as soon as its agents are gone.
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        sup.wakeup_fd = wake_write
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a Python handler, so the wakeup fd is written
        signal.signal(signal.SIGTERM, lambda *_: sup.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: sup.stopping.set())
        server = health.serve_health(sup)
        log("supervising", target_agents=config.target_agents, daemon=config.daemon, version=config.version,
            base_udp_port=config.base_udp_port, watching=bool(config.metadata_url))
        watchers = {name: _watcher(sup, target) for name, target in WATCH_TARGETS.items()} \
            if config.metadata_url else {}
        last_began = time.monotonic()
        while not sup.stopping.is_set():
            began = time.monotonic()
            # a loop comes round at least once a tick: much later, it was stopped (SIGSTOP) or starved
            if began - last_began > STOPPED_SECONDS + sup.config.tick_seconds:
                rolling.resumed(sup, began - last_began - sup.config.tick_seconds)
            last_began = began
            if server is None and sup.config.health_port:  # its port was taken: try again each tick
                server = health.serve_health(sup)
            keep_watchers(sup, watchers)
            try:
                tick(sup)
                sup.faults.clear("tick")
            except Exception as exc:  # noqa: BLE001 - supervising goes on; the fault is logged and reported
                sup.faults.record("tick", exc)
                log("tick-failed", error=f"{type(exc).__name__}: {exc}")
            staged = upgrade.due(sup)
            if staged is not None:  # the new supervisor takes over this process: the agents run on, its children
                signal.set_wakeup_fd(-1)
                if server:
                    server.shutdown()
                    server.server_close()
                upgrade.execute(sup, staged)  # returns only if it could not be run (then it is refused)
                signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
                server = health.serve_health(sup)
            now = time.monotonic()
            sup.ticks += 1
            sup.last_tick_seconds = now - began
            # wake for the next tick, or for the next spawn round if it is due sooner, or on a signal or a change
            wake = now + sup.config.tick_seconds
            if now < sup.next_round < wake:
                wake = sup.next_round
            if not sup.stopping.is_set():
                select.select([wake_read], [], [], max(0.0, wake - now))
                with suppress(BlockingIOError):
                    while os.read(wake_read, 4096):
                        pass
                gap = began + MIN_TICK_GAP_SECONDS - time.monotonic()
                if gap > 0:
                    time.sleep(gap)
        signal.set_wakeup_fd(-1)
        stop_all(sup)
        if sup.preempted_at:
            # the power-off is seconds away: exiting now would let systemd restart the unit and start agents again;
            # wait for the shutdown's SIGTERM (or SIGKILL), still answering /healthz and /metrics
            wait_for_power_off(sup)
        if server:
            server.shutdown()
    return 0


def wait_for_power_off(sup: Supervisor) -> None:
    """After a preemption's stop: hold, agent-free, until the shutdown signals this process (the SIGTERM that set
    `stopping` was the watcher's doing, so a new one is awaited)."""
    arrived = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: arrived.set())
    signal.signal(signal.SIGINT, lambda *_: arrived.set())
    while not arrived.wait(1.0):
        health.report(sup, time.monotonic())
