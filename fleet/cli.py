"""`python -m fleet ...`: the offline plan and the operators' commands. Exit codes: 0 ok, 1 findings, 2 error."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fleet import pilot
from fleet.verify.outputs import OutputsError

if TYPE_CHECKING:
    from fleet.verify.check import Report, Target
    from fleet.verify.outputs import StackOutputs

REPO_ROOT = Path(__file__).resolve().parent.parent
EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def cmd_plan(args: argparse.Namespace) -> int:
    return _plan_and_check(args, show_plan=True, check_policy=not args.no_policy)


def cmd_policy(args: argparse.Namespace) -> int:
    return _plan_and_check(args, show_plan=False, check_policy=True)


def _plan_and_check(args: argparse.Namespace, *, show_plan: bool, check_policy: bool) -> int:
    from fleet.plan.mock_engine import ProgramError, plan_program
    from fleet.plan.report import render_plan
    from fleet.plan.stack_files import ProjectError, load_project
    from fleet.policy.analyzer import PolicyPackError, analyze, load_overrides
    from fleet.policy.report import render_policy

    try:
        project = load_project(Path(args.program), args.stack)
        overrides = load_overrides(Path(args.policy_config) if args.policy_config else None)
    except (ProjectError, PolicyPackError) as exc:
        return fail(str(exc))
    try:
        plan = plan_program(project, args.stack, project.config.get("gcp:project", "mock-project"))
    except ProgramError as exc:
        return fail(f"stack {args.stack!r} of {project.directory}: {exc}")
    document = plan.to_json()
    report = None
    if check_policy:
        try:
            report = analyze(plan, Path(args.policy_pack), overrides)
        except PolicyPackError as exc:
            return fail(str(exc))
        document["policy"] = report.to_json()
    if show_plan:
        print(render_plan(plan))
    if report:
        print(("\n" if show_plan else "") + render_policy(report))
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
        except OSError as exc:
            return fail(f"cannot write {args.json}: {exc.strerror}")
        print(f"\nPlan written to {args.json}")
    return EXIT_FINDINGS if report and report.mandatory else EXIT_OK


def _load_outputs(args: argparse.Namespace) -> StackOutputs | None:
    """--outputs FILE / '-' (stdin), --stack NAME (Automation API), stdin when piped; None when not given."""
    from fleet.verify.outputs import outputs_from_stack, parse_outputs

    piped = args.outputs is None and args.stack is None and not sys.stdin.isatty() and not (
        getattr(args, "stats_url", None) and getattr(args, "expected", None) is not None)
    if args.outputs == "-" or piped:
        text = sys.stdin.read()
        if piped and not text.strip():
            return None  # nothing was piped in (cron, CI): fall through to "nothing to check"
        return parse_outputs(text, "stdin")
    if args.outputs:
        try:
            text = Path(args.outputs).read_text()
        except OSError as exc:
            raise OutputsError(f"cannot read {args.outputs}: {exc.strerror}") from None
        return parse_outputs(text, args.outputs)
    if args.stack:
        return outputs_from_stack(args.stack, str(Path(args.program)))
    return None


def cmd_verify(args: argparse.Namespace) -> int:
    from fleet.verify.check import Target, check
    from fleet.verify.report import render_html, render_table, render_watch_line

    try:
        outputs = _load_outputs(args)
    except OutputsError as exc:
        return fail(str(exc))
    if outputs is None:
        if not (args.stats_url and args.expected is not None):
            return fail("nothing to check: give --outputs FILE (or pipe `pulumi stack output --json`), "
                        "--stack NAME, or both --stats-url and --expected")
        target = Target(args.stats_url, args.expected, args.threshold or pilot.DEFAULT_ALERT_THRESHOLD)
    else:
        target = Target.from_outputs(outputs, args.stats_url, args.expected, args.threshold)
    if args.watch is not None:
        return _watch(target, args, render_watch_line)
    report = check(target, args.wait, args.interval, per_host=not args.no_per_host)
    print(json.dumps(report.to_json(), indent=2) if args.json else render_table(report))
    if args.html:
        try:
            Path(args.html).write_text(render_html(report))
        except OSError as exc:
            return fail(f"cannot write {args.html}: {exc.strerror}")
    return report.exit_code


def _watch(target: Target, args: argparse.Namespace, line: Callable[[Report], str]) -> int:
    """The seed's health loop done properly: one line per change of verdict or count, until interrupted."""
    from fleet.verify.check import check_once

    last: tuple[str, int | None] | None = None
    code, checks = 0, 0
    try:
        while args.checks is None or checks < args.checks:
            report = check_once(target, time.monotonic() + min(args.watch, 10.0) + 0.5,
                                per_host=not args.no_per_host)
            checks += 1
            code = report.exit_code
            state = (report.verdict, report.count.online if report.count else None)
            if state != last:
                print(json.dumps(report.to_json()) if args.json else line(report), flush=True)
                last = state
            if args.checks is None or checks < args.checks:
                time.sleep(args.watch)
    except KeyboardInterrupt:
        pass
    return code


def cmd_monitoring(args: argparse.Namespace) -> int:
    from fleet.verify.monitoring import MonitoringError, write_monitoring

    try:
        outputs = _load_outputs(args)
    except OutputsError as exc:
        return fail(str(exc))
    if outputs is None:
        return fail("give --outputs FILE (or pipe `pulumi stack output --json`) or --stack NAME")
    try:
        written = write_monitoring(outputs, Path(args.out))
    except MonitoringError as exc:
        return fail(str(exc))
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


def cmd_capacity(args: argparse.Namespace) -> int:
    from fleet.capacity import Assumptions, PlanningError, from_stack, recommend, render
    from fleet.config import FleetConfigError, parse_fleet_config, raw_from_flat
    from fleet.plan.stack_files import ProjectError, load_project
    from fleet.prices import PriceError, price_table
    from fleet.scale_stack import StackWriteError, write_stack

    assumptions = Assumptions(
        region=args.region, agent_memory_mb=args.agent_memory_mb, headroom_percent=args.headroom,
        os_reserve_mb=args.os_reserve_mb, burst_connections=args.burst_connections, connection_mb=args.connection_mb,
        max_share=args.max_share, new_registrations_per_minute=args.new_registrations_per_minute,
        max_agents_per_vcpu=args.max_agents_per_vcpu)
    try:
        fleets = [recommend(args.agents, assumptions)]
        if args.compare_stack:
            project = load_project(Path(args.program), args.compare_stack)
            cfg = parse_fleet_config(raw_from_flat(project.config))
            fleets.append(from_stack(cfg, args.compare_stack, args.region))
    except (PlanningError, PriceError, ProjectError) as exc:
        return fail(str(exc))
    except FleetConfigError as exc:
        return fail(f"stack {args.compare_stack!r}: " + "; ".join(exc.problems))
    table = price_table()
    print(render(fleets))
    print(f"Prices: {args.region} on-demand, {table.date} (fleet/data/prices.yaml); "
          f"{table.hours_per_month:g} hours a month; swarm VMs only (the rendezvous is extra).")
    if args.write_stack:
        try:
            path = write_stack(Path(args.program), args.write_stack, fleets[0], assumptions, force=args.force)
        except StackWriteError as exc:
            return fail(str(exc))
        print(f"\nWrote {path}: plan it with `python -m fleet plan --stack {args.write_stack}`")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fleet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="plan a stack offline under the Pulumi SDK's mock engine (no cloud, no "
                                       "CLI) and check it against the policy pack")
    policy = sub.add_parser("policy", help="plan a stack offline and print only the policy pack's verdict")
    for p in (plan, policy):
        p.add_argument("--stack", default="prod", help="stack name: reads Pulumi.<stack>.yaml (default: prod)")
        p.add_argument("--program", default=str(REPO_ROOT), help="Pulumi Python project directory (default: this repo)")
        p.add_argument("--policy-pack", default=str(REPO_ROOT / "policies"), help="policy pack directory")
        p.add_argument("--policy-config", metavar="FILE",
                       help="policy config JSON, as for `pulumi preview --policy-pack-config`")
        p.add_argument("--json", metavar="FILE", help="also write the plan (with policy results) as JSON to FILE")
    plan.add_argument("--no-policy", action="store_true", help="plan only; do not run the policy pack")
    plan.set_defaults(func=cmd_plan)
    policy.set_defaults(func=cmd_policy)

    verify = sub.add_parser("verify", help="check that the fleet reached its agent counts (exit 0 ok, 1 degraded, "
                                           "2 could not check)")
    monitoring = sub.add_parser("monitoring", help="write Prometheus service discovery and alert rules from the "
                                                   "stack outputs")
    for p in (verify, monitoring):
        p.add_argument("--outputs", metavar="FILE", help="stack outputs JSON (`pulumi stack output --json`, or a "
                                                         "plan written by `plan --json`); '-' reads stdin")
        p.add_argument("--stack", help="read the outputs of this stack through the Pulumi Automation API")
        p.add_argument("--program", default=str(REPO_ROOT), help="Pulumi project directory for --stack")
    verify.add_argument("--stats-url", help="rendezvous stats URL (default: the outputs' statsUrl)")
    verify.add_argument("--expected", type=int, help="expected agents (default: the outputs' expectedAgents)")
    verify.add_argument("--threshold", type=_share, help="share of expected agents that must be online "
                                                         "(default: the outputs' alertThreshold, else 0.95)")
    verify.add_argument("--wait", type=_seconds, default=0.0, metavar="SECONDS",
                        help="keep checking until ok or this deadline (default 0: one check, up to 10 s of retries)")
    verify.add_argument("--interval", type=_seconds, default=10.0, metavar="SECONDS",
                        help="pause between checks while waiting (default 10)")
    verify.add_argument("--watch", type=_seconds, metavar="SECONDS",
                        help="check every SECONDS and print a line per change, until interrupted")
    verify.add_argument("--checks", type=int, metavar="N", help="with --watch: stop after N checks")
    verify.add_argument("--json", action="store_true", help="print a machine-readable report")
    verify.add_argument("--html", metavar="FILE", help="also write a one-page HTML report with a bar chart")
    verify.add_argument("--no-per-host", action="store_true", help="skip the per-host guest attributes")
    verify.set_defaults(func=cmd_verify)
    monitoring.add_argument("--out", required=True, metavar="DIR", help="directory for the files")
    monitoring.set_defaults(func=cmd_monitoring)

    from fleet.capacity import Assumptions

    d = Assumptions()
    capacity = sub.add_parser("capacity", help="the cheapest mix of machine types for N agents, with cost and the "
                                               "limit that binds each VM")
    capacity.add_argument("--agents", type=_positive, required=True, help="how many agents")
    capacity.add_argument("--region", default=d.region, help=f"price region (default {d.region})")
    capacity.add_argument("--headroom", type=float, default=d.headroom_percent, metavar="PERCENT",
                          help=f"memory headroom over idle agents, percent (default {d.headroom_percent:g})")
    capacity.add_argument("--agent-memory-mb", type=float, default=d.agent_memory_mb,
                          help=f"idle memory per agent (default {d.agent_memory_mb:g}; 1.18.0 measured 13.4)")
    capacity.add_argument("--os-reserve-mb", type=int, default=d.os_reserve_mb,
                          help=f"memory kept for the OS (default {d.os_reserve_mb})")
    capacity.add_argument("--burst-connections", type=int, default=d.burst_connections,
                          help="simultaneous connections one VM must absorb on top of the headroom (seed: 800)")
    capacity.add_argument("--connection-mb", type=float, default=d.connection_mb,
                          help=f"memory per active connection (default {d.connection_mb:g})")
    capacity.add_argument("--max-share", type=_share, default=d.max_share,
                          help=f"largest share of all agents one VM may hold (default {d.max_share:g})")
    capacity.add_argument("--max-agents-per-vcpu", type=int, default=d.max_agents_per_vcpu,
                          help="a CPU ceiling, if you have measured one (default: none)")
    capacity.add_argument("--new-registrations-per-minute", type=_positive,
                          default=d.new_registrations_per_minute,
                          help="the registry's new-identity limit per source IP (default 10)")
    capacity.add_argument("--compare-stack", metavar="NAME", help="show the same figures for Pulumi.NAME.yaml")
    capacity.add_argument("--program", default=str(REPO_ROOT), help="Pulumi project directory (stack files)")
    capacity.add_argument("--write-stack", metavar="NAME", help="write the recommendation as Pulumi.NAME.yaml")
    capacity.add_argument("--force", action="store_true", help="with --write-stack: replace an existing file")
    capacity.set_defaults(func=cmd_capacity)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds cannot be negative")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a share in (0, 1]")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
