"""The names the program gives the resources it makes from a configured name: the components declare them with
these, and config validation (fleet/config/checks.py) checks every one against Compute Engine's 63 characters and
against each other before anything is declared."""

from __future__ import annotations

import hashlib

# Network tags: every fleet VM's (the SSH rule), the rendezvous' (its ports), each swarm VM's (its agents' ports).
FLEET_TAG = "pilot-fleet"
RENDEZVOUS_TAG = "pilot-rendezvous"
# The rendezvous' firewall rules, by what they open.
RENDEZVOUS_RULES = ("registry", "beacon", "dashboard")


def swarm_tag(vm: str) -> str:
    return f"pilot-swarm-{vm}"


def ssh_rule(network: str) -> str:
    return f"{network}-allow-ssh"


def subnet(network: str, region: str) -> str:
    return f"{network}-{region}"


def address(rendezvous: str) -> str:
    return f"{rendezvous}-ip"


def internal_address(rendezvous: str) -> str:
    """The rendezvous' reserved internal address (agentReach vpc: agents register with it)."""
    return f"{rendezvous}-internal-ip"


def store_disk(rendezvous: str, from_snapshot: str | None = None) -> str:
    """The registry's store disk; one recreated from a snapshot is named after it (a short digest of its name)."""
    if not from_snapshot:
        return f"{rendezvous}-store"
    return f"{rendezvous}-store-{hashlib.sha256(from_snapshot.encode()).hexdigest()[:8]}"


def store_snapshots(rendezvous: str) -> str:
    """The store disk's snapshot schedule (a resource policy) and its attachment to the disk."""
    return f"{rendezvous}-store-snapshots"


def rendezvous_rule(rendezvous: str, what: str) -> str:
    return f"{rendezvous}-allow-{what}"


def agents_rule(vm: str) -> str:
    return f"{vm}-allow-agents"


def state_disk(host: str) -> str:
    return f"{host}-state"


def template_prefix(pool: str) -> str:
    """A pool's instance templates are named from this prefix (Pulumi adds a suffix; the provider allows 54)."""
    return f"{pool}-"


def group_vm(pool: str) -> str:
    """The longest name of a pool's VMs: the group names them after the pool and four characters of its own."""
    return f"{pool}-xxxx"


def health_check(pool: str) -> str:
    return f"{pool}-health"


def health_checks_rule(pool: str) -> str:
    return f"{pool}-allow-health-checks"


def registry_key_secret(rendezvous: str) -> str:
    """The Secret Manager secret holding the registry certificate's private key (its versions are the rotations)."""
    return f"{rendezvous}-registry-key"
