"""`capacity`: the planner's recommendation, the comparison with a stack, and --write-stack."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fleet.commands import EXIT_OK, fail


def cmd_capacity(args: argparse.Namespace) -> int:
    from fleet.capacity.cold_start_plan import ColdStartPlan, for_recommendation, for_stack
    from fleet.capacity.frontier import frontier
    from fleet.capacity.frontier import render as render_frontier
    from fleet.capacity.scale_stack import StackWriteError, write_stack
    from fleet.capacity.sizing import Assumptions, PlanningError, from_stack, recommend, render
    from fleet.config.model import FleetConfigError
    from fleet.config.pulumi_source import parse_flat_config
    from fleet.facts.prices import PriceError, price_table
    from fleet.plan.stack_files import ProjectError, load_project

    assumptions = Assumptions(
        region=args.region, agent_memory_mb=args.agent_memory_mb, headroom_percent=args.headroom,
        os_reserve_mb=args.os_reserve_mb, burst_connections=args.burst_connections, connection_mb=args.connection_mb,
        max_share=args.max_share, new_registrations_per_minute=args.new_registrations_per_minute,
        max_agents_per_vcpu=args.max_agents_per_vcpu)
    stack = args.stack or args.compare_stack
    if args.stack and args.write_stack:
        return fail("--write-stack writes a recommendation: use it with --agents, not --stack")
    if args.spot and not args.write_stack:
        return fail("--spot says what --write-stack writes: give --write-stack NAME too")
    try:
        fleets = [recommend(args.agents, assumptions)] if args.agents else []
        options = frontier(args.agents, assumptions, args.spot_floor) if args.agents else []
        cold: ColdStartPlan
        if stack:
            project = load_project(Path(args.program), stack)
            cfg = parse_flat_config(project.config)
            fleets.append(from_stack(cfg, stack, args.region))
            on_spot = from_stack(cfg, stack, args.region, all_spot=True)
        if args.stack:
            cold = for_stack(cfg, args.stack, args.cold_start_minutes)
        else:
            cold = for_recommendation(fleets[0], args.new_registrations_per_minute,
                                      args.cold_start_minutes)
    except (PlanningError, PriceError, ProjectError) as exc:
        return fail(str(exc))
    except FleetConfigError as exc:
        return fail(f"stack {stack!r}: " + "; ".join(exc.problems))
    if args.json:
        print(json.dumps(cold.json(), indent=2))
        return EXIT_OK
    table = price_table()
    print(render(fleets))
    if options:
        print(render_frontier(args.agents, options, table.spot_date))
    if stack:
        print(f"{on_spot.title}: {on_spot.agents:,} agents, ${on_spot.monthly:,.0f} a month, "
              f"${on_spot.per_thousand:,.2f} per 1,000 agents a month with every swarm VM on Spot "
              f"(rates of {table.spot_date})\n")
    print(cold.render())
    print(f"Prices: {args.region} on-demand, {table.date}, and Spot, {table.spot_date} (fleet/facts/data/prices.yaml); "
          f"{table.hours_per_month:g} hours a month; swarm VMs with their boot and agent state disks "
          "(pd-balanced); the rendezvous is extra.")
    if args.write_stack:
        written = options[-1].fleet if args.spot else fleets[0]
        try:
            path = write_stack(Path(args.program), args.write_stack, written, assumptions, force=args.force,
                               cold_start_minutes=args.cold_start_minutes,
                               spot_floor=args.spot_floor if args.spot else None)
        except StackWriteError as exc:
            return fail(str(exc))
        print(f"\nWrote {path}: plan it with `python -m fleet plan --stack {args.write_stack}`")
    return EXIT_OK
