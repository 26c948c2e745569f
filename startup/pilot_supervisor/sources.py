"""Registration addresses: the source addresses a swarm VM's agents register from, and the routing that gives each
agent its own.

The registry limits new identities per source IP of the registration connection, and records an agent's address as
that IP with the daemon's port; pilot-daemon dials with no local address, so the VM chooses it. Agent i registers
from address i mod N (its position): the first is the VM's internal address, the others come from the VM's alias
IP ranges (Compute Engine routes them to the VM; google-guest-agent makes them local). The agents of position k run
as their own user (privilege.address_user), and a policy-routing rule sends that user's sockets to table
ROUTE_TABLE_BASE + k: the main table's routes with the preferred source address k. So the registry connection, the
heartbeats and the agent's UDP tunnel all leave from its address, and peers reach it there, with no NAT.

The boot path runs `sources` as root after `prepare` wrote the addresses into the supervisor's config; it creates
the users and the routes, and checks each user's route to the registry.
"""

from __future__ import annotations

import grp
import ipaddress
import pwd
import subprocess
import time

from pilot_supervisor.attributes import instance_value
from pilot_supervisor.config import Config
from pilot_supervisor.contract import contract, key
from pilot_supervisor.privilege import address_user

# Compute Engine allows 10 alias IP ranges per network interface.
MAX_ALIAS_RANGES = 10
# google-guest-agent makes alias addresses local shortly after boot; the boot path waits this long for them.
LOCAL_WAIT_SECONDS = 120.0
# flags `ip route show` prints that `ip route add` does not take
SHOW_ONLY = {"linkdown", "dead", "offload", "trap", "rt_offload", "rt_trap"}


class SourcesError(Exception):
    """The registration addresses cannot be set up as asked; nothing is started from a wrong address."""


def addresses(metadata_url: str, count: int) -> tuple[str, ...]:
    """COUNT registration addresses: the VM's internal address, then its alias ranges' (empty for one: the VM's
    only address, as its routing picks it)."""
    if count <= 1:
        return ()
    primary = instance_value(metadata_url, "network-interfaces/0/ip")
    ranges = []
    for i in range(MAX_ALIAS_RANGES):
        value = instance_value(metadata_url, f"network-interfaces/0/ip-aliases/{i}")
        if not value:
            break
        ranges.append(value)
    found = [primary] if primary else []
    try:
        for text in ranges:
            found += [str(a) for a in ipaddress.IPv4Network(text, strict=False)]
    except ValueError as exc:
        raise SourcesError(f"alias IP range {text!r} of this VM is not an IPv4 range: {exc}") from None
    if len(found) < count:
        raise SourcesError(f"{key('REGISTRATION_ADDRESSES')} asks for {count} addresses; this VM has {len(found)} "
                           f"(internal {primary or 'none'}, alias ranges {ranges or 'none'}): the stack gives it an "
                           "alias IP range of that size (agentReach vpc)")
    return tuple(found[:count])


def _ip(*args: str, check: bool = True) -> str:
    result = subprocess.run(["ip", "-4", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise SourcesError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def ensure_users(config: Config) -> list[int]:
    """The agents' user for each address (the first exists already), all in the agents' group; their uids."""
    base = pwd.getpwnam(config.agent_user)
    group = grp.getgrgid(base.pw_gid).gr_name
    uids = []
    for k in range(config.address_count):
        name = address_user(config.agent_user, k)
        try:
            uids.append(pwd.getpwnam(name).pw_uid)
            continue
        except KeyError:
            pass
        result = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                                 "--shell", "/usr/sbin/nologin", "--no-user-group", "--gid", group, name],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SourcesError(f"could not create the system user {name}: {result.stderr.strip()}")
        uids.append(pwd.getpwnam(name).pw_uid)
    return uids


def wait_local(addresses: tuple[str, ...], timeout: float = LOCAL_WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    for address in addresses:
        while not _ip("route", "get", address).startswith("local "):
            if time.monotonic() > deadline:
                raise SourcesError(f"registration address {address} is not local to this VM after {timeout:.0f} s: "
                                   "google-guest-agent adds its alias IP ranges (is it running, with ip_aliases on?)")
            time.sleep(1.0)


def routes_from(address: str) -> list[list[str]]:
    """The main table's routes, each with ADDRESS as its preferred source."""
    out = []
    for line in _ip("route", "show", "table", "main").splitlines():
        words = [w for w in line.split() if w not in SHOW_ONLY]
        if "src" in words:
            del words[words.index("src"):words.index("src") + 2]
        if words:
            out.append([*words, "src", address])
    return out


def _rules() -> list[tuple[int, str]]:
    """(preference, the rest of the line) of every policy-routing rule, once per rule."""
    found = []
    for line in _ip("rule", "show").splitlines():
        pref, _, rest = line.partition(":")
        if pref.isdigit():
            found.append((int(pref), " ".join(rest.split())))
    return found


def route(addresses: tuple[str, ...], uids: list[int]) -> None:
    """A rule and a table for every address past the first (its user's sockets take it as their source). Run again
    (a boot, a rerun of the startup script) it changes only what differs: an agent's new connection never takes
    the wrong source while its rule is replaced by the same one. Rules of a larger count before go."""
    base = int(contract()["route_table_base"])
    high = base + int(contract()["swarm"]["registration_addresses"]["high"])
    wanted = {base + k: f"from all uidrange {uids[k]}-{uids[k]} lookup {base + k}" for k in range(1, len(addresses))}
    for k in range(1, len(addresses)):
        for words in routes_from(addresses[k]):
            _ip("route", "replace", *words, "table", str(base + k))
    present = set()
    for pref, rule in _rules():
        if not base < pref < high:
            continue
        if wanted.get(pref) == rule and pref not in present:
            present.add(pref)
            continue
        _ip("rule", "del", "pref", str(pref), *rule.split()[2:4])  # this rule: its own uidrange
        if pref not in wanted:
            _ip("route", "flush", "table", str(pref), check=False)
    for pref, rule in wanted.items():
        if pref not in present:
            _ip("rule", "add", "pref", str(pref), *rule.split()[2:])


def source_toward(host: str, uid: int) -> str:
    """The source address a socket of UID takes toward HOST, as the kernel routes it now."""
    words = _ip("route", "get", host, "uid", str(uid)).split()
    return words[words.index("src") + 1] if "src" in words else ""


def apply(config: Config) -> list[str]:
    """Users, rules and tables for the registration addresses, checked: each user's route to the registry leaves
    from its address. Returns a line per address."""
    addresses = config.registration_addresses
    uids = ensure_users(config) if addresses else []
    wait_local(addresses)
    route(addresses, uids)
    registry = config.registry.rpartition(":")[0]
    report = []
    for k, address in enumerate(addresses):
        user = address_user(config.agent_user, k)
        source = source_toward(registry, uids[k])
        if source != address:
            raise SourcesError(f"agents of {user} would reach the registry {registry} from {source or 'nowhere'}, "
                               f"not from their registration address {address}")
        report.append(f"{user} registers from {address}")
    return report
