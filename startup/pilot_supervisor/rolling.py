"""What the supervisor does for a rollout (rollout.py decides): which agents are stale, which order moves a UDP
port range without collisions, stopping a batch, failing and reverting, a deadline that does not count time the
supervisor itself was stopped."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from pilot_supervisor.agents import agent_socket, fingerprint, process_fingerprint
from pilot_supervisor.journal import log
from pilot_supervisor.rollout import ROLLED_FIELDS

if TYPE_CHECKING:
    from pilot_supervisor.supervisor import Supervisor


def current(sup: Supervisor, index: int) -> bool:
    """Agent `index` runs as the config starts it now, once (not a leftover second process)."""
    pids = sup.running.get(index, [])
    if len(pids) != 1:
        return False
    if pids[0] not in sup.fingerprints:
        sup.fingerprints[pids[0]] = process_fingerprint(pids[0])
    return sup.fingerprints[pids[0]] == fingerprint(sup.config, index)


def stale(sup: Supervisor) -> list[int]:
    """The agents to roll, in the order that never collides: agent i restarts on base + i, which a not-yet-rolled
    agent may hold when the base moved by less than the target; moving up, the highest index goes first, moving
    down the lowest."""
    rollout = sup.rollout
    left = [i for i in sorted(sup.running) if i < sup.config.target_agents and not current(sup, i)]
    return left[::-1] if rollout is not None and rollout.highest_first else left


def roll(sup: Supervisor, now: float) -> None:
    rollout = sup.rollout
    if rollout is None:
        return
    c = sup.config

    def registered(i: int) -> bool:
        return agent_socket(c, i).exists()

    if not rollout.batch and c.registry_fingerprint and rollout.previous.registry_fingerprint != \
            c.registry_fingerprint and not sup.probe_registry():
        # a new pin: no batch goes down before the registry serves that certificate (the rendezvous restarts on it
        # once `pulumi up` has given it; until then the agents on the old pin are the ones that work)
        return

    step = rollout.step(now, back=lambda i: current(sup, i) and registered(i), registered=registered,
                        stale=lambda: stale(sup), size=sup.batch_size,
                        batch_seconds=lambda n: (-(-n // c.spawn_parallelism) * c.round_delay_seconds
                                                 + c.rollout_registration_seconds))
    if step.progressed:
        log("rollout-progress", done=rollout.done, of=rollout.total, reason=rollout.reason)
    if step.late:
        fail(sup, f"agents {list(step.late[:10])} of version {c.version} were not back and registered in time")
    elif step.finished:
        log(f"rollout-{'reverted' if rollout.reverting else 'done'}", reason=rollout.reason, agents=rollout.done)
        if not rollout.reverting:
            sup.last_change = rollout.outcome()
        sup.rollout = None
    elif step.batch:
        for index in step.batch:
            for pid in sup.running.get(index, []):
                sup.rolled.add(pid)
                sup.terminate(pid, "agent-rolled")
        log("rollout-batch", agents=list(step.batch), done=rollout.done, of=rollout.total)


def fail(sup: Supervisor, reason: str) -> None:
    """The new processes do not come back registered: go back, in batches too, to what ran before."""
    rollout = sup.rollout
    assert rollout is not None
    bad = sup.config
    sup.config = dataclasses.replace(bad, **{name: getattr(rollout.previous, name) for name in ROLLED_FIELDS})
    log("rollout-failed", reason=reason, rollout=rollout.reason, back_to_version=sup.config.version)
    sup.last_change = rollout.failure(reason)
    sup.rollout = rollout.revert(sup.config, highest_first=sup.config.base_udp_port > bad.base_udp_port)
    sup.persist()


def resumed(sup: Supervisor, gap: float) -> None:
    """The supervisor was stopped (SIGSTOP) or starved for GAP seconds: the batch in flight did not have that time,
    so its deadline moves by it."""
    log("supervisor-resumed", stopped_seconds=round(gap, 1))
    if sup.rollout is not None and sup.rollout.batch:
        sup.rollout.batch_deadline += gap
