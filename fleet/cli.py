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
    from fleet.plan.mock_engine import ProgramError, plan_program
    from fleet.plan.report import render_plan
    from fleet.plan.stack_files import ProjectError, load_project

    try:
        project = load_project(Path(args.program), args.stack)
    except ProjectError as exc:
        return fail(str(exc))
    try:
        plan = plan_program(project, args.stack, project.config.get("gcp:project", "mock-project"))
    except ProgramError as exc:
        return fail(f"stack {args.stack!r} of {project.directory}: {exc}")
    print(render_plan(plan))
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(plan.to_json(), indent=2) + "\n")
        except OSError as exc:
            return fail(f"cannot write {args.json}: {exc.strerror}")
        print(f"\nPlan written to {args.json}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fleet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="plan a stack offline under the Pulumi SDK's mock engine (no cloud, no CLI)")
    plan.add_argument("--stack", default="prod", help="stack name: reads Pulumi.<stack>.yaml (default: prod)")
    plan.add_argument("--program", default=str(REPO_ROOT), help="Pulumi Python project directory (default: this repo)")
    plan.add_argument("--json", metavar="FILE", help="also write the plan as JSON to FILE")
    plan.set_defaults(func=cmd_plan)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
