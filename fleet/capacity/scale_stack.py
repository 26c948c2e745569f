"""`capacity --write-stack NAME`: the planner's recommendation as a stack file the program accepts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from fleet.capacity.cold_start import Pacing, parallelism_for
from fleet.capacity.sizing import Assumptions, CostedFleet
from fleet.config.model import FleetConfigError
from fleet.config.pulumi_source import parse_flat_config
from fleet.facts import pilot
from fleet.facts.rendezvous_build import build_table

STACK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
RENDEZVOUS_MACHINE = "e2-standard-8"  # the registry's state for 50,000 agents is a few MB; see SCALING.md


class StackWriteError(Exception):
    pass


def stack_config(name: str, fleet: CostedFleet, a: Assumptions,
                 cold_start_minutes: float | None = None) -> dict[str, Any]:
    region = a.region
    zones = [f"{region}-{z}" for z in ("a", "b", "c")]
    key = pilot.PROJECT_NAME
    # a Spot line is its own pool (its group recreates a preempted VM on its state disk; README "Spot swarms")
    pools = [{
        "name": f"{name}-{'spot-' if line.spot else ''}{line.capacity.machine.name}",
        "machineType": line.capacity.machine.name,
        "zones": zones,
        "size": line.count,
        "targetAgents": line.target_agents,
        **({"provisioning": "spot"} if line.spot else {}),
    } for line in fleet.lines]
    defaults: dict[str, Any] = {"agentMemoryMb": a.agent_memory_mb, "baseUdpPort": a.base_udp_port}
    budget: dict[str, Any] = {}
    if cold_start_minutes is not None:  # rounds for the budget; the program sizes each VM's addresses for it
        busiest = max(line.target_agents for line in fleet.lines)
        rounds = parallelism_for(Pacing(busiest, 1, a.new_registrations_per_minute, pilot.DEFAULT_SPAWN_PARALLELISM,
                                        pilot.DEFAULT_ROUND_DELAY_SECONDS), cold_start_minutes * 60,
                                 pilot.MAX_SPAWN_PARALLELISM)
        if rounds is None:
            raise StackWriteError(f"no round of at most {pilot.MAX_SPAWN_PARALLELISM} starts brings {busiest:,} agents "
                                  f"up within {cold_start_minutes:g} minutes: lower --max-share")
        defaults["spawnParallelism"] = max(rounds, pilot.DEFAULT_SPAWN_PARALLELISM)
        budget = {f"{key}:coldStartMinutes": cold_start_minutes, f"{key}:agentReach": "vpc"}
    return {
        "gcp:project": f"pilot-fleet-{name}",
        "gcp:region": region,
        "gcp:zone": zones[0],
        f"{key}:network": {"name": f"pilot-fleet-{name}"},
        f"{key}:rendezvous": {"name": f"pilot-rendezvous-{name}", "machineType": RENDEZVOUS_MACHINE,
                              "source": build_table().default_source,
                              "failoverZone": zones[1],
                              "newRegistrationsPerMinute": a.new_registrations_per_minute},
        **budget,
        f"{key}:registry": {"tls": True},  # README "Registry TLS"
        f"{key}:agentDefaults": defaults,
        f"{key}:memory": {"osReserveMb": a.reserve_mb, "headroomPercent": a.headroom_percent},
        f"{key}:swarmPools": pools,
    }


def write_stack(program: Path, name: str, fleet: CostedFleet, a: Assumptions, force: bool = False,
                cold_start_minutes: float | None = None, spot_floor: float | None = None) -> Path:
    """FLEET as Pulumi.NAME.yaml; SPOT_FLOOR: it is the cost frontier's mix with that on-demand share (the header
    says how it was written)."""
    if not STACK_NAME.match(name):
        raise StackWriteError(f"stack name {name!r}: use 1-16 lowercase letters, digits and hyphens, "
                              "starting with a letter (it becomes part of resource names)")
    path = program / f"Pulumi.{name}.yaml"
    if path.exists() and not force:
        raise StackWriteError(f"{path} exists; pass --force to replace it")
    config = stack_config(name, fleet, a, cold_start_minutes)
    try:  # never write a stack the program would refuse
        parse_flat_config(config)
    except FleetConfigError as exc:
        raise StackWriteError(f"the recommendation does not make a valid stack: {'; '.join(exc.problems)}") from None
    budget = f" --cold-start-minutes {cold_start_minutes:g}" if cold_start_minutes is not None else ""
    spot = sum(line.agents for line in fleet.lines if line.spot)
    how = f" --spot-floor {spot_floor:g} --spot" if spot_floor is not None else ""
    pricing = f"{a.region} on-demand and Spot" if spot else f"{a.region} on-demand"
    header = (f"# Written by `python -m fleet capacity --agents {fleet.requested}{budget}{how} --write-stack {name}` "
              f"on {datetime.now(UTC):%Y-%m-%d}: {fleet.agents:,} agents on {fleet.vms} VMs"
              f"{f' ({spot:,} on Spot)' if spot else ''}, ${fleet.monthly:,.0f} a month ({pricing}, "
              "fleet/facts/data/prices.yaml).\n"
              "# gcp:project is a placeholder: `pulumi config set gcp:project YOUR_PROJECT`. The rendezvous builds\n"
              "# from the pinned public source at its first boot (fleet/facts/data/rendezvous_build.yaml);\n"
              "# see README.md.\n")
    tmp = path.with_suffix(".yaml.tmp")
    try:
        tmp.write_text(header + yaml.safe_dump({"config": config}, sort_keys=False))
        tmp.replace(path)
    except OSError as exc:
        raise StackWriteError(f"cannot write {path}: {exc.strerror}") from None
    return path
