"""The planner's cold-start model (fleet/capacity/cold_start.py): the registry's bucket per address, the supervisor's
rounds, the rendezvous' measured rate, and sizing for a budget. The whole-fleet test holds it to a real host."""

from __future__ import annotations

from itertools import pairwise

from fleet.capacity.cold_start import (
    Pacing,
    addresses_for,
    fleet_cold_start,
    parallelism_for,
    vm_cold_start,
)
from fleet.facts.rendezvous_capacity import RendezvousCapacity
from fleet.vm_contract import REGISTRATION_LAG_SECONDS


def test_one_address_meets_the_registrys_own_floor() -> None:
    # a burst of 10 at once (one round), then one every 6 s from when the registry saw the first of them (the lag):
    # the 20th starts at lag + 60 s, registered a second later
    assert vm_cold_start(Pacing(20, 1, 10, 10, 3.0)) == REGISTRATION_LAG_SECONDS + 60.0 + 1.0
    # the rounds alone bind when the registry does not: 1,000 in rounds of 20, 3 s apart
    assert vm_cold_start(Pacing(1000, 1, 100_000, 20, 3.0)) == 49 * 3.0 + 1.0
    # ... which is the pacing floor: the last round is charged its registration, not a whole delay
    assert Pacing(1000, 1, 100_000, 20, 3.0).floor_by_rounds() == 49 * 3.0 + 1.0


def test_more_addresses_never_take_longer_and_meet_the_floor_of_their_share() -> None:
    times = [vm_cold_start(Pacing(3000, n, 10, 50, 3.0)) for n in range(1, 120)]
    assert all(later <= earlier for earlier, later in pairwise(times)), times
    p = Pacing(400, 4, 10, 200, 3.0)  # rounds never bind: the busiest address's 100 set the time
    assert vm_cold_start(p) == REGISTRATION_LAG_SECONDS + p.floor_by_addresses() + 1.0
    assert p.floor_by_addresses() == (100 - 10) * 6.0


def test_sizing_finds_the_fewest_addresses_and_the_smallest_round_for_a_budget() -> None:
    p = Pacing(5000, 1, 10, 80, 3.0)
    fewest = addresses_for(p, 240, 257)
    assert fewest is not None
    at = Pacing(5000, fewest, 10, 80, 3.0)
    below = Pacing(5000, fewest - 1, 10, 80, 3.0)
    assert vm_cold_start(at) <= 240 / 1.1 < vm_cold_start(below)  # sized with the model's slack
    assert addresses_for(Pacing(5000, 1, 10, 10, 3.0), 240, 257) is None  # rounds of 10: 1,500 s whatever
    rounds = parallelism_for(Pacing(5000, 1, 10, 10, 3.0), 240, 200)
    assert rounds is not None and Pacing(5000, 1, 10, rounds, 3.0).floor_by_rounds() <= 240 / 1.1 + 3.0


def test_the_fleet_is_bounded_by_the_rendezvous_and_says_past_what_was_measured() -> None:
    measured = RendezvousCapacity(registrations_per_second=100, measured_identities=1000, usable_share=0.5,
                                  measured_on="test")
    vms = [(Pacing(2000, 200, 10, 200, 1.0), 3)]
    fleet = fleet_cold_start(vms, measured)
    assert fleet.rendezvous_seconds == 6000 / 100 and fleet.seconds >= fleet.rendezvous_seconds
    assert fleet.peak_per_second == 600.0
    assert any("over 50% of the 100" in n for n in fleet.notes) and any("measured up to 1,000" in n
                                                                         for n in fleet.notes)




def test_every_in_bounds_round_delay_is_modelled_zero_included() -> None:
    """roundDelaySeconds 0 is in bounds: rounds back to back, bounded by the buckets alone, never a division by it."""
    back_to_back = Pacing(20, 1, 10, 10, 0.0)
    assert vm_cold_start(back_to_back) == REGISTRATION_LAG_SECONDS + 60.0 + 1.0  # the registry's floor alone
    assert parallelism_for(back_to_back, 240, 200) == 1
    fleet = fleet_cold_start([(back_to_back, 2)], RendezvousCapacity(registrations_per_second=100,
                                                                     measured_identities=1000, usable_share=0.5,
                                                                     measured_on="test"))
    assert fleet.seconds == vm_cold_start(back_to_back)
    assert any("roundDelaySeconds 0 starts the rounds back to back" in note for note in fleet.notes)
    assert fleet.back_to_back == 2 and fleet.peak_per_second == 0


def test_known_identities_start_first_and_take_the_tokens_they_find_without_waiting() -> None:
    """A scale-up or a restart after a reboot: the supervisor starts the identities the registry knows first; each
    takes a token where its address's bucket has one (the registry takes one from a known key whenever it can),
    and none waits for one, so the fresh ones after them find the bucket that much emptier."""
    # ten known ones take the burst, exactly as ten fresh ones would
    assert vm_cold_start(Pacing(20, 1, 10, 10, 3.0, known=10)) == vm_cold_start(Pacing(30, 1, 10, 10, 3.0))
    # fifteen known ones on an empty bucket past the burst do not wait: five fresh after them beat twenty fresh
    assert vm_cold_start(Pacing(5, 1, 10, 10, 3.0, known=15)) < vm_cold_start(Pacing(20, 1, 10, 10, 3.0))
    # from two addresses, known ones alternate as their indices do
    assert vm_cold_start(Pacing(40, 2, 10, 10, 3.0, known=15)) > vm_cold_start(Pacing(40, 2, 10, 10, 3.0))
