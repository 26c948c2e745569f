"""The live rollover state machine (startup/pilot_supervisor/rollout.py) on its own: every transition, no processes."""

from __future__ import annotations

from testbed.supervisor_harness import sv

Rollout = sv.rollout.Rollout


def _step(rollout: Rollout, now: float, *, back: set[int], registered: set[int] | None = None,
          stale: list[int], size: int = 2) -> sv.rollout.Step:
    return rollout.step(now, back=lambda i: i in back, registered=lambda i: i in (registered or back),
                        stale=lambda: [i for i in stale if i not in back], size=size,
                        batch_seconds=lambda n: 10.0 * n)


def test_batch_size_is_the_share_of_the_target_and_at_least_one() -> None:
    assert sv.rollout.batch_size(3000, 0.1) == 300
    assert sv.rollout.batch_size(5, 0.1) == 1
    assert sv.rollout.batch_size(20, 0.25) == 5


def test_the_first_look_stops_the_first_batch_with_its_deadline() -> None:
    rollout = Rollout("version 1.17.0 -> 1.18.0", previous="old config")
    step = _step(rollout, 100.0, back=set(), stale=[0, 1, 2, 3, 4])
    assert step == sv.rollout.Step(batch=(0, 1))
    assert (rollout.batch, rollout.total, rollout.done, rollout.batch_deadline) == ([0, 1], 5, 0, 120.0)
    assert rollout.status() == {"state": "rolling", "reason": "version 1.17.0 -> 1.18.0", "done": 0, "of": 5}


def test_a_batch_in_flight_waits_until_every_agent_is_back_and_registered() -> None:
    rollout = Rollout("gogc", previous=None)
    _step(rollout, 0.0, back=set(), stale=[0, 1, 2])
    assert _step(rollout, 5.0, back={0}, stale=[0, 1, 2]) == sv.rollout.Step()  # 1 is not back yet: nothing to do
    assert rollout.batch == [0, 1] and rollout.done == 0


def test_a_batch_back_counts_and_the_next_one_starts_in_the_same_look() -> None:
    rollout = Rollout("gogc", previous=None)
    _step(rollout, 0.0, back=set(), stale=[0, 1, 2])
    step = _step(rollout, 6.0, back={0, 1}, stale=[0, 1, 2])
    assert step == sv.rollout.Step(progressed=True, batch=(2,))
    assert (rollout.done, rollout.total, rollout.batch, rollout.batch_deadline) == (2, 3, [2], 16.0)


def test_the_last_batch_back_finishes_the_rollout() -> None:
    rollout = Rollout("gogc", previous=None)
    _step(rollout, 0.0, back=set(), stale=[0, 1])
    step = _step(rollout, 3.0, back={0, 1}, stale=[0, 1])
    assert step == sv.rollout.Step(progressed=True, finished=True)
    assert rollout.outcome() == {"state": "done", "reason": "gogc", "done": 2, "of": 2}


def test_nothing_stale_finishes_at_once() -> None:
    assert _step(Rollout("registry", previous=None), 0.0, back=set(), stale=[]) == sv.rollout.Step(finished=True)


def test_a_batch_past_its_deadline_names_the_agents_not_registered() -> None:
    rollout = Rollout("version 1.17.0 -> 1.18.0", previous="old")
    _step(rollout, 0.0, back=set(), stale=[0, 1, 2])  # deadline 20 s
    assert _step(rollout, 20.0, back=set(), registered={0}, stale=[0, 1, 2]) == sv.rollout.Step()  # not yet past
    assert _step(rollout, 20.5, back=set(), registered={0}, stale=[0, 1, 2]) == sv.rollout.Step(late=(1,))
    assert rollout.failure("agent 1 late")["state"] == "failed"


def test_a_revert_rolls_back_to_the_previous_config_and_says_so() -> None:
    failed = Rollout("version 1.17.0 -> 1.18.0", previous="1.17.0 config", done=4, total=10)
    revert = failed.revert("1.17.0 config")
    assert (revert.reverting, revert.previous, revert.reason) == (True, "1.17.0 config",
                                                                   "revert of version 1.17.0 -> 1.18.0")
    assert revert.status()["state"] == "reverting"
    assert failed.failure("agents [3] late") == {"state": "failed", "done": 4, "of": 10,
                                                 "reason": "version 1.17.0 -> 1.18.0: agents [3] late"}


def test_agents_that_turn_stale_mid_rollout_raise_the_total() -> None:
    rollout = Rollout("gogc", previous=None)
    _step(rollout, 0.0, back=set(), stale=[0, 1])
    step = _step(rollout, 1.0, back={0, 1}, stale=[0, 1, 5, 6, 7])  # a raised target brought three more
    assert step.batch == (5, 6) and rollout.total == 5
