"""Placing the VMs' own addresses and their alias IP ranges in a subnet's primary range as Compute Engine does
(fleet/capacity/subnet.py): a range on a multiple of its size, clear of the four addresses every subnet keeps."""

from __future__ import annotations

import pytest

from fleet.capacity.subnet import Claim, place


def hosts(count: int, prefix: int | None, who: str = "swarmHosts[0] (a)") -> Claim:
    return Claim(who=who, count=count, alias_prefix=prefix)


# (subnet, claims, None if it fits else (who, what the reason says))
CASES = {
    "a /25 in a /24: either half holds a kept address": ("10.0.0.0/24", [hosts(1, 25)], ("swarmHosts[0] (a)", "/25")),
    "two /26 in a /24: the middle quarters": ("10.0.0.0/24", [hosts(2, 26)], None),
    "a third /26 in a /24": ("10.0.0.0/24", [hosts(3, 26)], ("swarmHosts[0] (a)", "/26")),
    "a /26 and its VMs' own addresses": ("10.0.0.0/24", [hosts(2, 26), hosts(122, None, "b")], None),
    "one own address too many": ("10.0.0.0/24", [hosts(2, 26), hosts(123, None, "b")],
                                 ("b", "124 addresses left after the alias ranges, for 125")),
    "small ranges fill the gaps a big one leaves": ("10.0.0.0/24", [hosts(1, 26), hosts(30, 30, "b")], None),
    "254 /24s in a /16": ("10.0.0.0/16", [hosts(254, 24)], None),
    "255 /24s in a /16": ("10.0.0.0/16", [hosts(255, 24)], ("swarmHosts[0] (a)", "/24")),
    "a /32 alias is one address": ("10.0.0.0/29", [hosts(2, 32)], None),
    "nothing in a /30 but its kept addresses": ("10.0.0.0/30", [hosts(1, None)], ("swarmHosts[0] (a)", "0 addresses")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_alias_ranges_are_placed_as_compute_engine_places_them(case: str) -> None:
    subnet, claims, expected = CASES[case]
    got = place(subnet, claims)
    if expected is None:
        assert got is None, got
    else:
        assert got is not None and got.who == expected[0] and expected[1] in got.reason, got
