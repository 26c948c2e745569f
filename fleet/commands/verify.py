"""`verify` and `monitoring`: the post-deploy check and the Prometheus files, both from the stack outputs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fleet.commands import EXIT_OK, fail
from fleet.facts import pilot
from fleet.outputs import OutputsError

if TYPE_CHECKING:
    from fleet.outputs import StackOutputs
    from fleet.verify.check import Expectation, Report


def _text(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OutputsError(f"{source}: not UTF-8 text (the outputs are JSON)") from None


def _load_outputs(args: argparse.Namespace) -> StackOutputs | None:
    """--outputs FILE / '-' (stdin), --stack NAME (Automation API), stdin when piped; None when not given."""
    from fleet.outputs import parse_outputs
    from fleet.verify.outputs import outputs_from_stack

    piped = args.outputs is None and args.stack is None and not sys.stdin.isatty() and not (
        getattr(args, "stats_url", None) and getattr(args, "expected", None) is not None)
    if args.outputs == "-" or piped:
        text = _text(sys.stdin.buffer.read(), "stdin")
        if piped and not text.strip():
            return None  # nothing was piped in (cron, CI): fall through to "nothing to check"
        return parse_outputs(text, "stdin")
    if args.outputs:
        try:
            data = Path(args.outputs).read_bytes()
        except OSError as exc:
            raise OutputsError(f"cannot read {args.outputs}: {exc.strerror}") from None
        return parse_outputs(_text(data, args.outputs), args.outputs)
    if args.stack:
        return outputs_from_stack(args.stack, str(Path(args.program)))
    return None


def cmd_verify(args: argparse.Namespace) -> int:
    from fleet.verify.check import Expectation, check
    from fleet.verify.report import render_html, render_table, render_watch_line

    if args.checks is not None and args.watch is None:
        return fail("--checks N counts the checks of --watch SECONDS: give --watch too")
    try:
        outputs = _load_outputs(args)
    except OutputsError as exc:
        return fail(str(exc))
    if outputs is None:
        if not (args.stats_url and args.expected is not None):
            return fail("nothing to check: give --outputs FILE (or pipe `pulumi stack output --json`), "
                        "--stack NAME, or both --stats-url and --expected")
        expectation = Expectation(args.stats_url, args.expected, args.threshold or pilot.DEFAULT_ALERT_THRESHOLD,
                        max_over=args.max_over)
    else:
        expectation = Expectation.from_outputs(outputs, args.stats_url, args.expected, args.threshold, args.max_over)
    if expectation.expected < 1:
        return fail(f"nothing to check: the fleet expects {expectation.expected} agents (expectedAgents in the "
                    "outputs); a fleet without agents cannot be verified")
    if args.watch is not None:
        return _watch(expectation, args, render_watch_line)
    report = check(expectation, args.wait, args.interval, per_host=not args.no_per_host)
    print(json.dumps(report.to_json(), indent=2) if args.json else render_table(report))
    if args.html:
        try:
            Path(args.html).write_text(render_html(report))
        except OSError as exc:
            return fail(f"cannot write {args.html}: {exc.strerror}")
    return report.exit_code


def _watch(expectation: Expectation, args: argparse.Namespace, line: Callable[[Report], str]) -> int:
    """The seed's health loop done properly: one line per change of verdict or count, until interrupted."""
    from fleet.verify.check import Progress, check_once

    last: tuple[str, int | None] | None = None
    code, checks, progress = 0, 0, Progress()  # a host that claims a change without moving stops covering
    try:
        while args.checks is None or checks < args.checks:
            report = check_once(expectation, time.monotonic() + min(args.watch, 10.0) + 0.5,
                                per_host=not args.no_per_host, progress=progress)
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
    from fleet.monitoring.alerts import MonitoringError, Timings
    from fleet.monitoring.files import write_monitoring

    try:
        outputs = _load_outputs(args)
    except OutputsError as exc:
        return fail(str(exc))
    if outputs is None:
        return fail("give --outputs FILE (or pipe `pulumi stack output --json`) or --stack NAME")
    try:
        timings = Timings().changed(args.scrape_interval, args.alert_for)
        written = write_monitoring(outputs, Path(args.out), timings)
    except MonitoringError as exc:
        return fail(str(exc))
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK
