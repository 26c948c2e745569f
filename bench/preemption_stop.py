"""Benchmark (a measurement, once): how a host's agents stop when its Spot VM is preempted, and how they come back.

A preemption gives a VM 30 s before Compute Engine powers it off. The real daemons (the pinned wheel) of one host,
registered with the real rendezvous (pinned source) on loopback, are stopped all at once, two ways in turn:
  * SIGTERM: pilot-daemon's own shutdown (it closes its tunnels and its registry connection);
  * SIGKILL: gone at once, the registry left to notice their heartbeats stop.
For each: the time until every daemon has exited, what the registry logged meanwhile (deregistrations, errors) and
what it holds just after, then every agent started again on its identity (as the recreated VM's supervisor would
start them: known identities, in rounds), the time until all are registered again, and whether any came back as a
new node (a new node id, or the registry logging a new registration) or was refused.

The rendezvous is a test-only build of the pinned source that admits 100,000 new identities a minute per source
IP (testbed/real_rendezvous.py), only so that the first registration of N identities from one address does not
take hours; after that every registration is of a known identity, which the pinned limit lets through anyway, and
the log shows whether any was new (and the registry's node count, which a new identity would raise).

Run: .venv/bin/python bench/preemption_stop.py [--agents 1000]   (loopback only; about 13 MB of memory per agent)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fleet.facts import pilot  # noqa: E402
from fleet.facts.pilot_releases import releases  # noqa: E402
from testbed.real_rendezvous import Rendezvous, rendezvous_on_loopback  # noqa: E402
from testbed.supervisor_harness import free_udp_ports, sv  # noqa: E402
from tests.conftest import extract_daemon  # noqa: E402

ROUND = 50  # starts at once when they come back, as a recreated VM's supervisor rounds known identities


def stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return dict(json.loads(answer.read()))


class Host:
    """N agents with the supervisor's own command line and environment, each with its own directory."""

    def __init__(self, base: Path, daemon: Path, rv: Rendezvous, agents: int) -> None:
        self.config = sv.config.Config(
            target_agents=agents, daemon=str(daemon), registry=rv.registry, beacon=rv.beacon,
            base_udp_port=free_udp_ports(agents), state_dir=str(base / "state"), run_dir=str(base / "run"),
            spawn_parallelism=ROUND, round_delay_seconds=0.0, new_registrations_per_minute=100000,
            health_threshold=0.95, rollout_max_unavailable=0.1, endpoint_ip="127.0.0.1",
            daemon_flags=releases()[pilot.PILOT_VERSION].flags)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, index: int) -> None:
        home = sv.agents.agent_dir(self.config, index)
        home.mkdir(parents=True, exist_ok=True)
        sv.agents.agent_socket(self.config, index).parent.mkdir(parents=True, exist_ok=True)
        sv.agents.agent_socket(self.config, index).unlink(missing_ok=True)
        with open(home / "daemon.log", "ab") as out:
            self.procs[index] = subprocess.Popen(sv.agents.daemon_argv(self.config, index), stdout=out,
                                                 stderr=subprocess.STDOUT, env=sv.agents.daemon_env(self.config, index),
                                                 cwd=home, start_new_session=True)

    def registered(self) -> int:
        return sum(1 for i in self.procs if sv.agents.agent_socket(self.config, i).exists())

    def start_all(self, timeout: float = 900.0) -> float:
        """Every agent in rounds of ROUND, each round once the last one registered; seconds until all are."""
        began = time.monotonic()
        for first in range(0, self.config.target_agents, ROUND):
            for index in range(first, min(first + ROUND, self.config.target_agents)):
                self.start(index)
            wait(lambda f=first: self.registered() >= min(f + ROUND, self.config.target_agents), timeout)
        return time.monotonic() - began

    def stop_all(self, sig: signal.Signals) -> float:
        """SIG to every agent at once; seconds until every one has exited."""
        began = time.monotonic()
        for proc in self.procs.values():
            os.kill(proc.pid, sig)
        for proc in self.procs.values():
            proc.wait(timeout=120)
        return time.monotonic() - began


def wait(what: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.1)


def log_count(rv: Rendezvous, offset: int, text: str) -> int:
    return rv.log.read_bytes()[offset:].decode(errors="replace").count(text)


def measure(host: Host, rv: Rendezvous, sig: signal.Signals) -> dict[str, Any]:
    offset = rv.log.stat().st_size
    stopped = host.stop_all(sig)
    time.sleep(1.0)  # what the registry logs as the connections close
    after_stop = stats(rv.stats_url)
    row = {"stop": sig.name, "agents": len(host.procs), "all_exited_seconds": round(stopped, 2),
           "deregistered": log_count(rv, offset, "deregistered node"),
           "registry_errors": log_count(rv, offset, '"level":"ERROR"') - log_count(rv, offset, "get_network_policy"),
           "nodes_after_stop": after_stop["total_nodes"], "online_after_stop": after_stop["active_nodes"]}
    offset = rv.log.stat().st_size
    row["back_seconds"] = round(host.start_all(), 1)
    row["new_nodes"] = log_count(rv, offset, '"mode":"new_node"')
    row["refused"] = log_count(rv, offset, "registration rate limited")
    # a node that came back as new would be one more: the old entries stay until the registry reaps them
    row["nodes_after_back"] = stats(rv.stats_url)["total_nodes"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pilot-fleet-preempt-"))
    daemon = extract_daemon(pilot.PILOT_VERSION, base)
    (base / "rv").mkdir()
    rows = []
    with rendezvous_on_loopback(base / "rv", registrations_per_minute=100000) as rv:
        host = Host(base / "host", daemon, rv, args.agents)
        first = host.start_all()
        print(json.dumps({"first_registration_seconds": round(first, 1)}), file=sys.stderr)
        try:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                rows.append(measure(host, rv, sig))
                print(json.dumps(rows[-1]), file=sys.stderr)
        finally:
            for proc in host.procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    print("| stop | agents | all exited s | deregistered | registry errors | nodes / online just after "
          "| all back s | new nodes | refused | nodes after |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['stop']} | {r['agents']:,} | {r['all_exited_seconds']} | {r['deregistered']} "
              f"| {r['registry_errors']} | {r['nodes_after_stop']:,} / {r['online_after_stop']:,} "
              f"| {r['back_seconds']} | {r['new_nodes']} | {r['refused']} | {r['nodes_after_back']:,} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
