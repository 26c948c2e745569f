"""Whether a subnet's primary range holds the fleet's VMs and their alias IP ranges, placed as Compute Engine places
them.

Compute Engine keeps four addresses of every subnet's primary range (the network address, the default gateway, the
second-to-last, and the broadcast address). A VM's own internal address is any free one. An alias range asked for
as a netmask (`"/26"`) is a block of that size on its own boundary (its first address a multiple of its size),
free of reserved and used addresses: a `/25` of a `/24` subnet holds the network address or the broadcast one
whichever half it is, so it never fits, though 128 addresses are free.

Placement here is the best Compute Engine could choose: the blocks largest first, each at the lowest free boundary
(aligned blocks nest, so largest-first is as tight as any order), then every VM's own address in what is left. A
fleet that does not fit so fits no other way: the deploy would fail at the VM that finds no block.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# The addresses Compute Engine keeps in every primary range: offsets from its start, and from its end
RESERVED_FIRST, RESERVED_LAST = 2, 2


@dataclass(frozen=True, kw_only=True)
class Claim:
    """What one kind of VM takes of the subnet: COUNT VMs, each its own address and, with ALIAS_PREFIX, an alias
    range of that netmask. WHO names them for a message."""

    who: str
    count: int
    alias_prefix: int | None


@dataclass(frozen=True)
class Shortfall:
    """The first claim that finds no room, and why."""

    who: str
    reason: str


def place(subnet_cidr: str, claims: list[Claim]) -> Shortfall | None:
    """None if every claim fits SUBNET_CIDR's primary range as Compute Engine places it, else the first that
    does not."""
    subnet = ipaddress.ip_network(subnet_cidr)
    size = subnet.num_addresses
    free = [(RESERVED_FIRST, size - RESERVED_LAST)] if size > RESERVED_FIRST + RESERVED_LAST else []  # [start, end)
    blocks = sorted(((32 - c.alias_prefix, c) for c in claims if c.alias_prefix is not None for _ in range(c.count)),
                    key=lambda block: block[0])
    for bits, claim in reversed(blocks):
        width = 1 << bits
        for i, (low, high) in enumerate(free):
            start = -(-low // width) * width
            if start + width <= high:
                free[i:i + 1] = [part for part in ((low, start), (start + width, high)) if part[0] < part[1]]
                break
        else:
            return Shortfall(claim.who, f"no free /{32 - bits} on its own boundary is left in {subnet_cidr} for its "
                                        "alias range (Compute Engine keeps the first two and last two addresses, "
                                        "and places a range on a multiple of its size)")
    left = sum(high - low for low, high in free)
    own = sum(c.count for c in claims)
    if own > left:
        return Shortfall(claims[-1].who, f"{subnet_cidr} has {left} addresses left after the alias ranges, for "
                                         f"{own} VMs' own addresses")
    return None
