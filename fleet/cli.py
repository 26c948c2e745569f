"""`python -m fleet ...`: the offline plan and the operators' commands. Exit codes: 0 ok, 1 findings, 2 error."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TypeVar

from fleet.commands import PROJECT_DIR, fail
from fleet.commands.capacity import cmd_capacity
from fleet.commands.plan import cmd_plan, cmd_policy
from fleet.commands.rendezvous import cmd_rendezvous_digest
from fleet.commands.verify import cmd_monitoring, cmd_verify
from fleet.facts.tables import FactsTableError

T = TypeVar("T", int, float)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fleet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="plan a stack offline under the Pulumi SDK's mock engine (no cloud, no "
                                       "CLI) and check it against the policy pack")
    policy = sub.add_parser("policy", help="plan a stack offline and print only the policy pack's verdict")
    for p in (plan, policy):
        p.add_argument("--stack", default="prod", help="stack name: reads Pulumi.<stack>.yaml (default: prod)")
        p.add_argument("--program", default=str(PROJECT_DIR),
                       help="Pulumi Python project directory (default: this checkout; installed: the current "
                            "directory)")
        p.add_argument("--policy-pack", default=str(PROJECT_DIR / "policies"), help="policy pack directory")
        p.add_argument("--policy-config", metavar="FILE",
                       help="policy config JSON, as for `pulumi preview --policy-pack-config`")
        p.add_argument("--json", metavar="FILE", help="also write the plan (with policy results) as JSON to FILE")
        p.add_argument("--stack-reference", action="append", default=[], metavar="NAME=FILE",
                       help="what a pulumi.StackReference to stack NAME reads: the outputs in FILE (`pulumi stack "
                            "output --json`, or a plan written by --json); repeatable")
        p.add_argument("--up", action="store_true", help="judge the plan as `pulumi up` does: every value another "
                       "resource gives resolved to the mock engine's (none unknown), where the default judges it as "
                       "`pulumi preview` does")
    plan.add_argument("--no-policy", action="store_true", help="plan only; do not run the policy pack")
    plan.add_argument("--compare", metavar="OLD_PLAN", help="a plan written earlier with --json: name the VMs whose "
                      "settings that take effect only at their next boot this plan changes")
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
        p.add_argument("--program", default=str(PROJECT_DIR), help="Pulumi project directory for --stack")
    verify.add_argument("--stats-url", help="rendezvous stats URL (default: the outputs' statsUrl)")
    verify.add_argument("--expected", type=_positive, help="expected agents (default: the outputs' expectedAgents)")
    verify.add_argument("--max-over", type=_count, metavar="N",
                        help="more than N agents above the expected count is a finding (exit 1): a second set of "
                             "agents after a reboot (default: more than expected is reported, not judged)")
    verify.add_argument("--threshold", type=_share, help="share of expected agents that must be online "
                                                         "(default: the outputs' alertThreshold, else 0.95)")
    verify.add_argument("--wait", type=_seconds, default=0.0, metavar="SECONDS",
                        help="keep checking until ok or this deadline (default 0: one check, up to 10 s of retries)")
    verify.add_argument("--interval", type=_seconds, default=10.0, metavar="SECONDS",
                        help="pause between checks while waiting (default 10)")
    verify.add_argument("--watch", type=_watch_seconds, metavar="SECONDS",
                        help="check every SECONDS and print a line per change, until interrupted")
    verify.add_argument("--checks", type=_positive, metavar="N", help="with --watch: stop after N checks")
    verify.add_argument("--json", action="store_true", help="print a machine-readable report")
    verify.add_argument("--html", metavar="FILE", help="also write a one-page HTML report with a bar chart")
    verify.add_argument("--no-per-host", action="store_true", help="skip the per-host guest attributes")
    verify.set_defaults(func=cmd_verify)
    monitoring.add_argument("--out", required=True, metavar="DIR", help="directory for the files")
    monitoring.add_argument("--scrape-interval", metavar="DURATION", help="how often Prometheus scrapes (default 60s)")
    monitoring.add_argument("--alert-for", action="append", default=[], metavar="ALERT=DURATION",
                            help="how long ALERT's condition holds before it fires (defaults: the seed's; repeat)")
    monitoring.set_defaults(func=cmd_monitoring)

    from fleet.capacity.sizing import Assumptions

    d = Assumptions()
    capacity = sub.add_parser("capacity", help="the cheapest mix of machine types for N agents, with cost and the "
                                               "limit that binds each VM")
    what = capacity.add_mutually_exclusive_group(required=True)
    what.add_argument("--agents", type=_positive, help="how many agents: the cheapest fleet for them")
    what.add_argument("--stack", metavar="NAME", help="a stack as Pulumi.NAME.yaml configures it: its cost and its "
                                                      "cold start")
    capacity.add_argument("--cold-start-minutes", type=_minutes, metavar="N",
                          help="the cold-start budget to size for (default: the stack's coldStartMinutes)")
    capacity.add_argument("--json", action="store_true", help="print the cold start as JSON (coldStartSeconds, "
                                                              "registrationAddresses and pacing per VM)")
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
    capacity.add_argument("--program", default=str(PROJECT_DIR), help="Pulumi project directory (stack files)")
    capacity.add_argument("--spot-floor", type=_floor, default=1 / 3, metavar="SHARE",
                          help="the share of agents the frontier's mix keeps on on-demand VMs (default 1/3, the spot "
                               "stack's; 0: all Spot)")
    capacity.add_argument("--write-stack", metavar="NAME", help="write the recommendation as Pulumi.NAME.yaml")
    capacity.add_argument("--spot", action="store_true", help="with --write-stack: write the frontier's mix (an "
                          "on-demand floor pool of --spot-floor and a Spot pool) instead of all on-demand")
    capacity.add_argument("--force", action="store_true", help="with --write-stack: replace an existing file")
    capacity.set_defaults(func=cmd_capacity)

    digest = sub.add_parser("rendezvous-digest", help="print the content digest of a rendezvous source archive "
                                                      "(`git archive` of a commit), to pin it in "
                                                      "fleet/facts/data/rendezvous_build.yaml")
    digest.add_argument("archive", help="a .tar.gz with one top directory")
    digest.set_defaults(func=cmd_rendezvous_digest)
    return parser


def _number(cast: Callable[[str], T], what: str, ok: Callable[[T], bool], rule: str) -> Callable[[str], T]:
    """An argparse type: `cast` the text, then check it, with one message naming the value and the rule."""

    def parse(text: str) -> T:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} {rule}")
        return value

    return parse


_positive = _number(int, "a whole number", lambda v: v > 0, "must be positive")
_count = _number(int, "a whole number", lambda v: v >= 0, "cannot be negative")
# a week: patience past that is a typo (and `inf` or `nan` would never return)
MAX_SECONDS = 7 * 24 * 3600.0
_seconds = _number(float, "a number of seconds", lambda v: 0 <= v <= MAX_SECONDS,
                   f"must be between 0 and {MAX_SECONDS:.0f} seconds (a week)")
_watch_seconds = _number(float, "a number of seconds", lambda v: 0.1 <= v <= MAX_SECONDS,
                         f"must be between 0.1 and {MAX_SECONDS:.0f} seconds")
_share = _number(float, "a number", lambda v: 0 < v <= 1, "must be a share in (0, 1]")
_floor = _number(float, "a number", lambda v: 0 <= v < 1, "must be a share in [0, 1)")
_minutes = _number(float, "a number of minutes", lambda v: 1 <= v <= 1440, "must be between 1 and 1440 (a day)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except FactsTableError as error:  # a row an operator added (README: "Where to change what")
        return fail(f"invalid facts table: {error}")
