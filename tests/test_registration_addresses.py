"""Registration addresses on the VM: the supervisor pacing each address by its own bucket, and the policy routing
that gives each address's agents their source, in a network namespace of this test's own (the planner's model of
the same is tests/test_cold_start.py; a whole VM registering from two addresses is tests/test_fleet_boot.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testbed.supervisor_harness import SUPERVISOR, sv

REPO = Path(__file__).resolve().parent.parent


# -- the supervisor: one bucket per address ------------------------------------------------------------------------

def _supervisor(tmp_path: Path, **overrides: Any) -> Any:
    values = {"target_agents": 40, "daemon": "/bin/false", "registry": "127.0.0.1:9", "beacon": "127.0.0.1:9",
              "base_udp_port": 20000, "state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run"),
              "spawn_parallelism": 40, "round_delay_seconds": 3.0, "new_registrations_per_minute": 10,
              "health_threshold": 0.95, "rollout_max_unavailable": 0.1,
              "registration_addresses": ["10.9.0.5", "10.9.0.128"],
              "registration_lag_seconds": sv.contract.contract()["registration_lag_seconds"], **overrides}
    sup = sv.supervisor.Supervisor(sv.config.Config(**values))
    sup.started_indices = []
    sup.probe_registry = lambda: True
    sup.spawn = lambda index, now, fresh: (sup.started_indices.append(index), sup.running.setdefault(index, [0]))
    return sup


def test_each_address_is_paced_by_a_bucket_of_its_own_as_big_as_the_rate(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    t0 = sup.buckets[0].stamp  # the supervisor's clock (monotonic) when it made its buckets
    sup.start_round(t0)
    # the registry's bucket per source IP holds its rate (10): 10 fresh identities from each address at once
    assert sorted(sup.started_indices) == list(range(20))
    sup.start_round(t0 + 3.0)
    assert len(sup.started_indices) == 20  # both buckets dry
    # they refill from when the registry saw the first registration, the contract's lag after it started
    lag = sv.contract.contract()["registration_lag_seconds"]
    sup.start_round(t0 + lag + 5.9)
    assert len(sup.started_indices) == 20
    sup.start_round(t0 + lag + 6.1)  # one token each
    assert sorted(sup.started_indices[20:]) == [20, 21]
    assert {sup.config.address_of(i) for i in sup.started_indices[20:]} == {0, 1}


def test_a_refusal_holds_back_only_its_own_address(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path, target_agents=30, new_registrations_per_minute=600)
    t0 = sup.buckets[0].stamp
    sup.on_refusal(0, t0)  # agent 0 registers from the first address
    sup.start_round(t0)
    assert sup.started_indices and all(sup.config.address_of(i) == 1 for i in sup.started_indices)


def test_agents_tell_their_peers_the_address_they_register_from(tmp_path: Path) -> None:
    config = sv.config.Config(**{**_supervisor(tmp_path).config.__dict__})
    for index, address in ((0, "10.9.0.5"), (1, "10.9.0.128"), (6, "10.9.0.5")):
        argv = sv.agents.daemon_argv(config, index)
        assert argv[argv.index("-endpoint") + 1] == f"{address}:{20000 + index}"


# -- the routing, in a network namespace -----------------------------------------------------------------------------

ROUTE_CHECK = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import pilot_supervisor.contract as contract
contract.load(Path(sys.argv[1]).parent / "contract.json")
from pilot_supervisor import sources
addresses = ("10.9.0.5", "10.9.0.129")
sources.route(addresses, [0, 65534])
sources.route(addresses, [0, 65534])  # again (a rerun of the startup script): nothing doubles
print(sources.source_toward("10.9.0.1", 0), sources.source_toward("10.9.0.1", 65534),
      sum(1 for pref, _ in sources._rules() if pref == 1001))
sources.route(addresses[:1], [0])  # a smaller count: the second address' rule goes
print(sources.source_toward("10.9.0.1", 65534))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_each_addresss_user_leaves_from_its_address_and_a_smaller_count_removes_its_route() -> None:
    namespace = f"pf-sources-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        for args in (["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"], ["link", "set", "eth0p", "up"],
                     ["addr", "add", "10.9.0.5/24", "dev", "eth0"],
                     ["link", "set", "eth0", "up"],
                     # what google-guest-agent does with an alias IP range
                     ["route", "add", "local", "10.9.0.128/31", "dev", "eth0", "table", "local"]):
            subprocess.run(["ip", "-n", namespace, *args], check=True)
        result = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", ROUTE_CHECK,
                                 str(SUPERVISOR)], capture_output=True, text=True, check=False, cwd=REPO)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n")[:2] == ["10.9.0.5 10.9.0.129 1", "10.9.0.5"], result.stdout
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)
