"""`plan` and `policy`: the offline plan under the mock engine, and the policy pack's verdict on it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fleet.commands import EXIT_FINDINGS, EXIT_OK, fail
from fleet.outputs import plan_outputs


class StackReferenceError(Exception):
    pass


def stack_reference(item: str) -> tuple[str, dict[str, Any]]:
    """NAME=FILE: the outputs a StackReference to NAME reads in the offline plan, from FILE (`pulumi stack output
    --json`, or a plan written by `plan --json`). Read as they are: the program that reads them checks them."""
    name, _, file = item.partition("=")
    if not name or not file:
        raise StackReferenceError(f"--stack-reference {item!r}: give NAME=FILE (e.g. "
                                  "organization/pilot-fleet/prod=plan.json)")
    try:
        raw = json.loads(Path(file).read_text())
    except OSError as exc:
        raise StackReferenceError(f"--stack-reference {name}: cannot read {file}: {exc.strerror}") from None
    except (ValueError, RecursionError) as exc:
        raise StackReferenceError(f"--stack-reference {name}: {file} is not JSON ({str(exc)[:120]})") from None
    raw = plan_outputs(raw)
    if not isinstance(raw, dict):
        raise StackReferenceError(f"--stack-reference {name}: {file} is not a JSON object of stack outputs")
    return name, raw


def cmd_plan(args: argparse.Namespace) -> int:
    return _plan_and_check(args, show_plan=True, check_policy=not args.no_policy)


def cmd_policy(args: argparse.Namespace) -> int:
    return _plan_and_check(args, show_plan=False, check_policy=True)


def _plan_and_check(args: argparse.Namespace, *, show_plan: bool, check_policy: bool) -> int:
    from fleet.plan.mock_engine import ProgramError, plan_program
    from fleet.plan.next_boot import PlanFileError, load_plan, next_boot_changes, render_next_boot
    from fleet.plan.report import render_plan
    from fleet.plan.stack_files import ProjectError, load_project
    from fleet.policy_runner.analyzer import PolicyPackError, analyze, load_overrides
    from fleet.policy_runner.report import render_policy

    compare = getattr(args, "compare", None)
    try:
        project = load_project(Path(args.program), args.stack)
        overrides = load_overrides(Path(args.policy_config) if args.policy_config else None)
        old_plan = load_plan(Path(compare)) if compare else None
        references = dict(stack_reference(item) for item in args.stack_reference)
    except (ProjectError, PolicyPackError, PlanFileError, StackReferenceError) as exc:
        return fail(str(exc))
    try:
        plan = plan_program(project, args.stack, project.config.get("gcp:project", "mock-project"),
                            up=getattr(args, "up", False), stack_references=references)
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
        # the plan shows what the provider would receive: a remediated resource's inputs are the remediated ones
        remediated = {r.urn: r for r in report.remediations if not r.diagnostic}
        for resource in document["resources"]:
            if resource["urn"] in remediated:
                resource["inputs"] = dict(remediated[resource["urn"]].inputs)
                resource["remediatedBy"] = sorted({r.policy for r in report.remediations
                                                   if r.urn == resource["urn"] and not r.diagnostic})
    if show_plan:
        print(render_plan(plan))
    if old_plan is not None:
        print("\n" + render_next_boot(Path(compare), next_boot_changes(old_plan, document)))
    if report:
        print(("\n" if show_plan else "") + render_policy(report))
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
        except OSError as exc:
            return fail(f"cannot write {args.json}: {exc.strerror}")
        print(f"\nPlan written to {args.json}")
    return EXIT_FINDINGS if report and report.mandatory else EXIT_OK
