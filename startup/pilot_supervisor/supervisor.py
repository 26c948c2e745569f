"""The supervisor's state and what it does to agents: reap, list, trim, mark the registered, start a paced round
(loop.py puts one tick together).

Every tick it
  * reaps exited children (one waitpid per exit) and, every `scan_seconds`, lists the running agents with a single
    /proc scan (one probe per agent would be thousands of calls), so agents it did not start itself (a crashed
    supervisor's) are seen and counted too;
  * stops agents above the target (highest index first) and never starts more than the gap to the target;
  * starts missing agents in paced rounds (`spawn_parallelism` per round, `round_delay_seconds` apart), only while
    the registry accepts TCP connections: a daemon that cannot reach it exits, and its restart backoff would then
    outlast the registry's arrival (one `pulumi up` boots the swarm hosts and their rendezvous at once). Starts
    draw on a bucket mirroring the registry's per-IP limit as the registry does: every registration takes a token
    when there is one, but only a fresh identity is refused without (a known key re-registers anyway), so only
    fresh identities wait for tokens;
  * restarts agents that exited (refused registration, crash, watchdog) after an exponential backoff.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pilot_supervisor import probes
from pilot_supervisor import rollout as rollouts
from pilot_supervisor.agents import (
    REFUSED_REGISTRATION,
    REGISTERED_MARKER,
    agent_dir,
    agent_socket,
    daemon_argv,
    daemon_env,
    fingerprint,
    list_agents,
    send_signal,
)
from pilot_supervisor.config import Config
from pilot_supervisor.faults import Faults
from pilot_supervisor.handover import Change
from pilot_supervisor.journal import log
from pilot_supervisor.pacing import PinMismatchError, TokenBucket, registry_pinned
from pilot_supervisor.privilege import AgentCgroup, AgentUser, address_user


@dataclasses.dataclass
class AgentState:
    started_at: float = 0.0
    failures: int = 0
    not_before: float = 0.0
    log_offset: int = 0  # where this start's output begins in daemon.log


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        now = time.monotonic()
        # one bucket per registration address, as the registry keeps one per source IP
        self.buckets = [TokenBucket(config.new_registrations_per_minute, config.bucket_capacity, now,
                                    config.registration_lag_seconds) for _ in range(config.address_count)]
        self.agents: dict[int, AgentState] = {}
        self.children: dict[int, tuple[int, subprocess.Popen[bytes]]] = {}
        self.running: dict[int, list[int]] = {}
        # What the health thread reads: an immutable copy of `running`, replaced whole after each tick. The main
        # thread mutates `running` while it spawns; iterating it from another thread could see it change size.
        self.view: dict[int, tuple[int, ...]] = {}
        self.restarts = 0
        self.next_round = 0.0
        self.stopping = threading.Event()
        self.published: dict[str, str] = {}
        self.next_publish = 0.0
        self.started = now
        self.registry_up: bool | None = None
        self.next_pin_check = 0.0  # while the registry-pin fault stands: when to look again (recheck_pin)
        self.ticks = 0
        self.last_tick_seconds = 0.0
        self.next_scan = 0.0
        # the registry refused registrations from an address: none of its fresh identities starts before then
        self.refusal_streak = 0
        self.fresh_not_before: dict[int, float] = {}
        # identities the registry knows, from the markers earlier runs left (read once; kept in step after)
        self.known = {int(m.parent.name) for m in (Path(config.state_dir) / "agents").glob(f"*/{REGISTERED_MARKER}")
                      if m.parent.name.isdigit()}
        # day two: the watcher threads hand the main loop what they found through this queue (handover.py); the
        # main loop alone drains it and applies it (live.take_changes): every field here is the main loop's
        self.config_path: Path | None = None
        self.inbox: queue.SimpleQueue[Change] = queue.SimpleQueue()
        self.fingerprints: dict[int, tuple[str, ...]] = {}  # pid -> what it runs
        self.rollout: rollouts.Rollout | None = None
        self.rolled: set[int] = set()  # pids a rollout stopped: their exit is no failure and waits for no backoff
        self.last_change: dict[str, Any] = {}  # the latest rollout's (or refused version's) outcome, for reports
        self.wakeup_fd: int | None = None  # the write end of the main loop's wake-up pipe
        self.faults = Faults()
        # the supervisor program itself (upgrade.py): the running zipapp's sha256, and a new one staged or refused
        self.supervisor_digest = ""
        self.upgrade: dict[str, str] = {}
        self.threads_down: tuple[str, ...] = ()  # watcher threads the loop found dead (and restarted) this tick
        self.persist_pending = False  # the last config write failed: written again at the next tick
        self.terminating: dict[int, float] = {}  # pid sent SIGTERM -> when it gets SIGKILL (stop grace)
        self.trimmed: set[int] = set()  # pids stopped because the target went down: their exit is no restart
        self.last_round = 0.0  # when the last spawn round started (a changed delay reschedules the next from it)
        self.batch_failure = ""  # why an agent of the rollout batch in flight failed (reap finds it, tick acts)
        self.preempted_at = 0.0  # when Compute Engine said it preempts this Spot VM (0: it has not)
        # who agents run as (one user per registration address: its policy routing picks the address), and the
        # cgroup that alone holds them (privilege.py): never counted by argv alone
        self.users = [AgentUser.resolve(address_user(config.agent_user, k)) for k in range(config.address_count)]
        self.user = self.users[0]
        self.cgroup = AgentCgroup.discover()
        self.counted_by = "cgroup" if self.cgroup else "user"
        if self.user:
            sockets, homes = agent_socket(config, 0).parent, agent_dir(config, 0).parent
            for directory in (sockets, homes):
                directory.mkdir(parents=True, exist_ok=True)
            self.user.share(sockets, files=False)
            self.user.enter(homes)

    def publish_view(self) -> None:
        self.view = {index: tuple(pids) for index, pids in self.running.items()}

    def listing(self) -> dict[int, list[int]]:
        """One /proc scan, plus every child not yet reaped (mid-exec, or a zombie): it counts until reaped."""
        if self.cgroup:
            running = list_agents(self.config, self.cgroup.pids())
        else:
            running = list_agents(self.config, uids={u.uid for u in self.users if u} or {os.geteuid()})
        for pid, (index, _) in self.children.items():
            if pid not in running.get(index, []):
                running.setdefault(index, []).append(pid)
        return running

    def exited_children(self) -> Iterator[tuple[int, int]]:
        """(pid, exit status) of every child that exited since the last call: one wait per exit, not per agent.
        Each exit is looked at before it is reaped: a probe's (probes.py) is its owner's to reap, and while one
        waits for its owner the agents this program started are looked at one by one instead."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            if probes.is_probe(info.si_pid):
                yield from self._exited_agents()
                return
            try:
                pid, status = os.waitpid(info.si_pid, os.WNOHANG)
            except ChildProcessError:  # its owner reaped it between the look and here
                continue
            if not pid:
                return
            yield pid, os.waitstatus_to_exitcode(status)

    def _exited_agents(self) -> Iterator[tuple[int, int]]:
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if done:
                yield done, os.waitstatus_to_exitcode(status)

    def reap(self, now: float) -> None:
        for pid, code in self.exited_children():
            if pid not in self.children:
                continue
            index, proc = self.children.pop(pid)
            proc.returncode = code  # reaped here: the Popen must not wait for it again
            pids = self.running.get(index, [])
            if pid in pids:
                pids.remove(pid)
                if not pids:
                    del self.running[index]
            state = self.agents.setdefault(index, AgentState())
            lived = now - state.started_at
            state.failures = 0 if lived >= self.config.settle_seconds else state.failures + 1
            delay = self.config.backoff_seconds(state.failures)
            state.not_before = now + delay
            ran = self.fingerprints.pop(pid, ())
            self.terminating.pop(pid, None)
            if self.stopping.is_set():
                continue
            if pid in self.trimmed:  # stopped because the target went down: no restart, nothing to count
                self.trimmed.discard(pid)
                continue
            if pid in self.rolled:  # stopped for a rollout: back at once, with what the config starts now
                self.rolled.discard(pid)
                state.failures, state.not_before = 0, now
                continue
            self.restarts += 1
            refused = code != 0 and self.refused(index)
            rollout = self.rollout
            if rollout and index in rollout.batch and ran == fingerprint(self.config, index) and \
                    (code != 0 or lived < self.config.settle_seconds) and not self.batch_failure:
                # the tick fails the rollout (rolling.py) once this reaping is done
                self.batch_failure = (f"agent {index} exited {code} after {lived:.1f} s with version "
                                      f"{self.config.version}" + (f": {refused}" if refused else ""))
            log("agent-exited", index=index, pid=pid, code=code, lived_seconds=round(lived, 1),
                restart_in_seconds=round(delay, 1), **({"registry_refused": refused} if refused else {}))
            if refused:
                self.on_refusal(index, now)

    def refused(self, index: int) -> str:
        """The line in which this agent's last start said the registry refused it; "" if it did not."""
        state = self.agents.get(index, AgentState())
        try:
            with open(agent_dir(self.config, index) / "daemon.log", "rb") as handle:
                end = handle.seek(0, os.SEEK_END)
                handle.seek(max(state.log_offset, end - 4096))
                text = handle.read().decode(errors="replace")
        except OSError:
            return ""
        line = next((line for line in text.splitlines() if REFUSED_REGISTRATION in line), "")
        return line[line.index(REFUSED_REGISTRATION):][:160].rstrip('"}') if line else ""

    def on_refusal(self, index: int, now: float) -> None:
        """The registry said no: our bucket for this agent's address was ahead of its own, or it forgot this
        identity (a lost store), or it is a standby. Empty that bucket, hold that address's fresh starts back
        (doubling while refusals go on), and pace a refused "known" identity as a fresh one from now on."""
        address = self.config.address_of(index)
        self.buckets[address].empty(now)
        self.refusal_streak += 1
        hold = min(self.config.backoff_max_seconds,
                   60.0 / self.config.new_registrations_per_minute * 2 ** (self.refusal_streak - 1))
        self.fresh_not_before[address] = max(self.fresh_not_before.get(address, 0.0), now + hold)
        if index in self.known:
            self.known.discard(index)
            with self.faults.guard("registered-marker"):
                (agent_dir(self.config, index) / REGISTERED_MARKER).unlink(missing_ok=True)

    def trim(self) -> None:
        """Above target (target lowered, or agents left by someone else): stop the highest indices."""
        surplus: list[int] = []
        for index, pids in self.running.items():
            surplus += pids[1:]  # two daemons on one socket: keep one
            if index >= self.config.target_agents:
                surplus.append(pids[0])
        for pid in surplus[: self.config.stop_batch]:
            if pid not in self.terminating:
                self.trimmed.add(pid)
                self.terminate(pid, "agent-surplus")

    def terminate(self, pid: int, event: str) -> None:
        """SIGTERM now (logged once), SIGKILL if it is still there after the stop grace (`escalate`)."""
        if pid in self.terminating:
            return
        log(event, pid=pid)
        self.terminating[pid] = time.monotonic() + self.config.stop_grace_seconds
        send_signal(pid, signal.SIGTERM)

    def escalate(self, now: float) -> None:
        """An agent that ignores SIGTERM past the stop grace is killed: it must not stay as one more than the
        target."""
        alive = {pid for pids in self.running.values() for pid in pids}
        for pid, deadline in list(self.terminating.items()):
            if pid not in alive:
                del self.terminating[pid]
            elif now >= deadline:
                log("agent-killed", pid=pid, after_seconds=self.config.stop_grace_seconds)
                send_signal(pid, signal.SIGKILL)
                self.terminating[pid] = now + self.config.stop_grace_seconds  # again, should KILL not reach it

    def mark_registered(self) -> None:
        """A running agent whose IPC socket exists is registered: pilot-daemon opens its socket only after the
        registry accepted it. Never guessed from the agent's age: a daemon retries a missing registry for longer
        than any timer, and an identity wrongly taken as known would be started without a token."""
        for index in self.running:
            if index not in self.known and agent_socket(self.config, index).exists():
                self.known.add(index)  # known in memory whatever the disk says; the marker is for restarts
                self.refusal_streak = 0
                with self.faults.guard("registered-marker"):
                    (agent_dir(self.config, index) / REGISTERED_MARKER).touch()

    def start_round(self, now: float) -> None:
        if now < self.next_round:
            return
        unreaped = {index for index, _ in self.children.values()}  # exited since reap(): backoff comes first
        missing = [i for i in range(self.config.target_agents)
                   if i not in self.running and i not in unreaped
                   and now >= self.agents.get(i, AgentState()).not_before]
        if missing and not self.probe_registry():
            self.next_round = now + max(self.config.round_delay_seconds, 1.0)
            return
        # known identities first: the registry does not rate-limit re-registration
        missing.sort(key=lambda i: (i not in self.known, i))
        started = 0
        dry: set[int] = set()  # addresses without a token (or held back) this round: their fresh ones wait
        for index in missing:
            if started >= self.config.spawn_parallelism or len(dry) == len(self.buckets):
                break
            fresh = index not in self.known
            address = self.config.address_of(index)
            if fresh and (address in dry or now < self.fresh_not_before.get(address, 0.0)):
                dry.add(address)
                continue
            # The registry takes a token for every registration it can (known keys too) and refuses only fresh
            # ones without: a known identity spends a token when there is one, a fresh one waits for it.
            if not self.buckets[address].take(now) and fresh:
                dry.add(address)
                continue
            self.spawn(index, now, fresh)
            started += 1
        if started:
            self.last_round = now
            # the next round is due one delay after this one began; the loop wakes for it, so rounds do not wait
            # for the next whole tick (which made them drift by up to a tick each)
            self.next_round = now + self.config.round_delay_seconds

    def probe_registry(self) -> bool:
        """No agent starts while the registry is unreachable: no token is spent, no backoff piles up."""
        c = self.config
        try:
            up = registry_pinned(c.registry, c.registry_probe_timeout_seconds, c.registry_fingerprint)
        except PinMismatchError as exc:  # its agents would retry and never register: none is started, and it is a fault
            self.faults.record("registry-pin", str(exc))
            up = False
        else:
            if up:
                self.faults.clear("registry-pin")
        if up != self.registry_up:
            log("registry-reachable" if up else "registry-unreachable", registry=self.config.registry)
            self.registry_up = up
        return up

    def preempt(self, now: float) -> None:
        """Compute Engine preempts this VM: one journal line, the status says so, and the stop begins now (the
        preemption's own, loop.stop_all) rather than when the power-off's SIGTERM reaches the unit."""
        if self.preempted_at:
            return
        self.preempted_at = now
        log("preempted", agents=sum(len(pids) for pids in self.running.values()),
            stop_within_seconds=self.config.preempt_stop_seconds)
        self.stopping.set()

    def recheck_pin(self, now: float) -> None:
        """A registry-pin fault is looked at again every round delay even when no agent is missing (a pin put right
        starts nothing, so no round would probe): it clears once the registry presents the pinned certificate."""
        if "registry-pin" in self.faults.current and now >= self.next_pin_check:
            self.next_pin_check = now + max(self.config.round_delay_seconds, 1.0)
            self.probe_registry()

    def spawn(self, index: int, now: float, fresh: bool) -> None:
        home = agent_dir(self.config, index)
        state = self.agents.setdefault(index, AgentState())
        try:
            home.mkdir(parents=True, exist_ok=True)
            agent_socket(self.config, index).parent.mkdir(parents=True, exist_ok=True)
            agent_socket(self.config, index).unlink(missing_ok=True)
            user = self.users[self.config.address_of(index)]
            if user:
                user.share(home)
            with open(home / "daemon.log", "ab") as out:
                offset = out.tell()
                proc = subprocess.Popen(daemon_argv(self.config, index), stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, env=daemon_env(self.config, index), cwd=home,
                                        close_fds=True, user=user.uid if user else None,
                                        group=user.gid if user else None, extra_groups=[] if user else None,
                                        umask=0o077 if user else -1)
        except OSError as exc:  # its files cannot be written (a full or read-only disk), or no binary: an agent
            # failure with its backoff, never the supervisor's
            state.failures += 1
            state.not_before = now + self.config.backoff_seconds(state.failures)
            self.faults.record("agent-start", exc)
            log("agent-start-failed", index=index, error=f"{type(exc).__name__}: {exc}",
                retry_in_seconds=round(state.not_before - now, 1))
            return
        self.faults.clear("agent-start")
        self.children[proc.pid] = (index, proc)
        if self.cgroup:
            try:
                self.cgroup.adopt(proc.pid)
            except OSError as exc:  # outside the agents' cgroup it would not be counted: it does not live
                self.faults.record("agent-cgroup", exc)
                log("agent-cgroup-failed", index=index, pid=proc.pid, error=f"{type(exc).__name__}: {exc}")
                send_signal(proc.pid, signal.SIGKILL)
            else:
                self.faults.clear("agent-cgroup")
        self.fingerprints[proc.pid] = fingerprint(self.config, index)
        state.started_at, state.log_offset = now, offset
        self.running.setdefault(index, []).append(proc.pid)
        log("agent-started", index=index, pid=proc.pid, fresh_identity=fresh)

    def persist(self) -> None:
        """What it converges to, for a restarted supervisor; a failed write is retried at the next tick."""
        if self.config_path is None:
            return
        self.persist_pending = True
        with self.faults.guard("config-write"):
            self.config.write(self.config_path)
            self.persist_pending = False

    # -- rolling agents over: rolling.py acts, rollout.py decides ---------------------------------------------------
    @property
    def batch_size(self) -> int:
        return rollouts.batch_size(self.config.target_agents, self.config.rollout_max_unavailable)

    def rollout_status(self) -> dict[str, Any]:
        return self.rollout.status() if self.rollout is not None else dict(self.last_change)
