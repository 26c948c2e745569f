"""`python -m fleet ...`: the offline plan and the operators' commands. Exit codes: 0 ok, 1 findings, 2 error."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
