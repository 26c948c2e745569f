"""Benchmark: the whole dev fleet's first boot, the rendezvous' time to answer, power-loss recovery, and a failover.

Run as root: .venv/bin/python bench/fleet_boot.py [--agents 20] [--addresses 2]   (needs what
`bash scripts/dev.sh test` sets up: the VM image in .cache/vm, the pinned wheels in .cache/wheels). It boots the
same test bed as tests/test_fleet_boot.py (every VM of the dev stack a Debian 12 system container under real
systemd; see testbed/vm_fleet.py for its stand-ins), every VM at once, and measures in one run:

- the rendezvous' own time from power-on to answering /api/stats, its build from the pinned source included;
- the first boot: from the first agent's start (its supervisor's journal) to the last new identity the rendezvous
  registered (its journal), as the planner counts it and the whole-fleet test measures it, from `--addresses`
  registration addresses per host (the VM's internal address and an alias IP range), as a ratio to the planner's
  figure for that pacing and those addresses (fleet/capacity/cold_start.py: the registry's bucket per address, 10
  at once then one every 6 s, and the supervisor's rounds), and the registrations it refused; also, as polled, from
  the registry's first answer to every agent registered (it counts the supervisor's wait for its next registry
  probe, which the planner does not);
- power-loss recovery: a swarm host's container is killed and booted again on the same disk; the time from
  power-on to all its agents registered again, and the registrations refused meanwhile (must be 0: the identities
  are reused, and known keys are not rate limited);
- the rendezvous failover drill: the rendezvous is killed (its zone lost) and the takeover `pulumi up` makes after
  `rendezvous.activeZone: us-central1-b` is carried out (the VM from that plan, on a fresh boot disk, with the same
  address and the same regional store disk); the time from the loss to every agent connected again to the new
  rendezvous (its registry port's established connections, one per agent), and the registrations it refused (must
  be 0).

Exit 1 when the first boot is slower than 1.1x the planner's figure, recovery takes 15 s or more, the failover
takes 120 s or more, or a re-registration was refused.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fleet.capacity.cold_start import Pacing, vm_cold_start  # noqa: E402
from fleet.vm_contract import MetadataKey  # noqa: E402
from testbed.vm_fleet import fleet_of, plan_stack, registrations, supervisor_events, wait_for  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20, help="agents per swarm host (default 20)")
    parser.add_argument("--addresses", type=int, default=2, help="registration addresses per host (default 2)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("error: the test bed needs root", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pilot-fleet-bench-") as tmp:
        base = Path(tmp)
        (base / "program").mkdir()
        (base / "failover").mkdir()
        plan = plan_stack("dev", args.agents, base / "program", hosts={"registrationAddresses": args.addresses})
        with fleet_of(plan, base / "fleet") as fleet:
            powered = fleet.boot_all()
            answered = wait_for(lambda: fleet.stats() is not None, 600, "the rendezvous never answered", poll=0.1)
            done: dict[str, float] = {}

            def all_registered() -> bool:
                for host in fleet.swarm:
                    if host.name not in done and host.registered_agents() == args.agents:
                        done[host.name] = time.monotonic()
                return len(done) == len(fleet.swarm)

            wait_for(all_registered, 1200, "the swarm hosts did not reach their targets", poll=0.1)
            # as the planner counts it, and the whole-fleet test measures it: from the first agent's start (its
            # supervisor's journal) to the last new identity the rendezvous registered (its journal), one clock
            since = time.time() - (time.monotonic() - powered)
            starts = [e["when"] for host in fleet.swarm for e in supervisor_events(host, "agent-started", since)]
            new = [when for when, mode, _ in registrations(fleet, since) if mode == "new_node"]
            first_boot = max(new) - min(starts)
            after_answer = max(done.values()) - answered
            a = fleet.swarm[0].attributes
            floor = vm_cold_start(Pacing(args.agents, args.addresses,
                                         float(a[MetadataKey.NEW_REGISTRATIONS_PER_MINUTE]),
                                         int(a[MetadataKey.SPAWN_PARALLELISM]),
                                         float(a[MetadataKey.ROUND_DELAY_SECONDS])))
            first_refused = fleet.refusals()

            host = fleet.swarm[-1]
            host.power_loss()
            before = fleet.refusals()
            host.boot()
            back = wait_for(lambda: host.registered_agents() == args.agents, 300, "no recovery", poll=0.05)
            recovery = back - host.booted_at
            recovery_refused = fleet.refusals() - before

            after = plan_stack("dev", args.agents, base / "failover", {"activeZone": "us-central1-b"})
            running = fleet.registry_connections()
            lost = time.monotonic()
            fleet.rendezvous.power_loss()
            fleet.fail_over_rendezvous(after).boot()
            back = wait_for(lambda: fleet.registry_connections() == running, 600, "no failover", poll=0.1)
            failover = back - lost
            failover_refused = fleet.refusals()

    hosts = len(done)
    print(f"whole-fleet boot of the dev stack: rendezvous + {hosts} swarm hosts x {args.agents} agents from "
          f"{args.addresses} registration address(es) each, all at once")
    print(f"rendezvous power-on to answering (build from source included): {answered - powered:6.1f} s")
    print(f"first boot, first agent started to last new identity registered: {first_boot:6.1f} s")
    print(f"  (registry answering to every agent registered, as polled:     {after_answer:6.1f} s)")
    print(f"the planner's figure for that pacing and {args.addresses} address(es):              {floor:6.1f} s")
    print(f"first boot / planner:                                          {first_boot / floor:6.2f}x")
    print(f"registrations refused during the first boot:                   {first_refused:6d}")
    print(f"power-loss recovery, power-on to every agent registered:      {recovery:6.1f} s")
    print(f"registrations refused during the recovery:                     {recovery_refused:6d}")
    print(f"rendezvous failover, zone lost to every agent connected again: {failover:6.1f} s")
    print(f"registrations the new rendezvous refused:                      {failover_refused:6d}")
    ok = first_boot <= 1.1 * floor and recovery < 15.0 and recovery_refused == 0 and failover < 120.0 \
        and failover_refused == 0
    print("within the bounds (first boot <= 1.1x floor, recovery < 15 s, failover < 120 s, 0 refusals after the "
          f"first boot): {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
