"""One post-deploy check: the fleet total from the rendezvous, per-host figures when credentials allow, a verdict."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from fleet.facts import pilot
from fleet.outputs import StackOutputs
from fleet.verify.compute_api import NoCredentialsError, connected
from fleet.verify.guest_attributes import HostReport, read_hosts, read_registry_restore
from fleet.verify.script_audit import audit
from fleet.verify.stats import FleetCount, Poller, StatsContractError, StatsError

OK, DEGRADED, FAILED, CONVERGING = "ok", "degraded", "failed", "converging"
# converging: below the threshold, but only by what hosts in the middle of a change (a rollout, a new target) have
# not brought back yet; check again later (`--wait`).
EXIT_CODES = {OK: 0, DEGRADED: 1, FAILED: 2, CONVERGING: 3}
# A host mid-change must show progress: what it reports (its running agents, its rollout's count) must move within
# this long, or its claim covers no shortfall (a VM that claims a change forever would keep the fleet converging).
STALL_SECONDS = 300.0
# The Compute Engine side of a check (guest attributes, group listings, the script audit) ends by the check's
# deadline, or this long after the stats were read if that is later: a slow or hostile API holds verify no longer.
COMPUTE_SECONDS = 30.0


@dataclass(frozen=True)
class Expectation:
    """What to check against: from the stack outputs, or given on the command line."""

    stats_url: str
    expected: int
    threshold: float
    project: str | None = None
    hosts: tuple[tuple[str, str, int], ...] = ()  # (name, zone, target_agents) of swarm hosts
    pools: tuple[tuple[str, str, int], ...] = ()  # (name, instance group manager path, agents per VM)
    rendezvous: tuple[str, str] | None = None  # (name, zone) of the rendezvous VM
    # More agents online than expected by more than this is a finding (a second fleet after a reboot); None: only
    # reported.
    max_over: int | None = None

    @property
    def min_online(self) -> int:
        return pilot.min_online(self.expected, self.threshold)

    @classmethod
    def from_outputs(cls, outputs: StackOutputs, stats_url: str | None = None, expected: int | None = None,
                     threshold: float | None = None, max_over: int | None = None) -> Expectation:
        return cls(stats_url or outputs.stats_url,
                   outputs.expected_agents if expected is None else expected,
                   outputs.alert_threshold if threshold is None else threshold,
                   outputs.project,
                   hosts=tuple((h.name, h.zone, h.target_agents) for h in outputs.swarm_hosts),
                   pools=tuple((p.name, p.manager_path, p.target_agents) for p in outputs.pools if p.manager_path),
                   rendezvous=(outputs.rendezvous_host.name, outputs.rendezvous_host.zone)
                   if outputs.rendezvous_host else None,
                   max_over=max_over)


@dataclass
class Report:
    verdict: str
    message: str
    expectation: Expectation
    count: FleetCount | None = None
    hosts: list[HostReport] = field(default_factory=list)
    per_host: str = "not requested"
    checked_at: str = ""
    settled: bool = False  # waiting cannot change this verdict (the stats URL answers another contract)
    # the rendezvous' guest attribute registry-restored-from: its store was restored from a generation at its last
    # start (the registry kept its identities; those registered after that generation registered again)
    registry_restored_from: str | None = None
    # instance-level or zone-level script keys on the fleet's VMs (script_audit.py): each makes the verdict degraded
    script_problems: list[str] = field(default_factory=list)
    script_unread: list[str] = field(default_factory=list)  # what the audit could not read

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict, "exitCode": self.exit_code, "message": self.message,
            "checkedAt": self.checked_at, "statsUrl": self.expectation.stats_url,
            "expected": self.expectation.expected, "threshold": self.expectation.threshold,
            "minOnline": self.expectation.min_online,
            "online": self.count.online if self.count else None,
            "overExpected": max(0, self.count.online - self.expectation.expected) if self.count else None,
            "maxOver": self.expectation.max_over,
            "total": self.count.total if self.count else None,
            "responseShape": self.count.shape if self.count else None,
            "perHost": self.per_host,
            "hosts": [{**asdict(h), "ratio": h.ratio} for h in self.hosts],
            "registryRestoredFrom": self.registry_restored_from,
            "scriptProblems": self.script_problems,
            "scriptAuditUnread": self.script_unread,
        }


def judge(expectation: Expectation, count: FleetCount) -> tuple[str, str]:
    online, need = count.online, expectation.min_online
    over = online - expectation.expected
    if over > 0 and expectation.max_over is not None and over > expectation.max_over:
        return DEGRADED, (f"{online:,} of {expectation.expected:,} agents online: {over:,} more than expected, above "
                          f"--max-over {expectation.max_over:,} (a second set of agents? {count.shape} stats shape)")
    if online >= need:
        surplus = f"; {over:,} more than expected" if over > 0 else ""
        return OK, (f"{online:,} of {expectation.expected:,} agents online (>= {need:,}, threshold "
                    f"{expectation.threshold:g}{surplus}; {count.shape} stats shape)")
    return DEGRADED, (f"{online:,} of {expectation.expected:,} agents online, below {need:,} (threshold "
                      f"{expectation.threshold:g}; {count.shape} stats shape)")


@dataclass
class Progress:
    """What each host mid-change last reported, and since when (time.monotonic), across the checks of one verify."""

    seen: dict[str, tuple[tuple[int | None, str | None], float]] = field(default_factory=dict)

    def stalled(self, hosts: list[HostReport], now: float) -> set[str]:
        """The hosts that claim a change but reported nothing new for STALL_SECONDS."""
        out = set()
        for host in hosts:
            if not host.converging:
                self.seen.pop(host.name, None)
                continue
            mark, last = (host.running, host.rollout or host.recreating), self.seen.get(host.name)
            if last is None or last[0] != mark:
                self.seen[host.name] = (mark, now)
            elif now - last[1] >= STALL_SECONDS:
                out.add(host.name)
        return out


def converging(expectation: Expectation, count: FleetCount, hosts: list[HostReport], message: str,
               stalled: set[str] = frozenset()) -> tuple[str, str]:  # type: ignore[assignment]
    """DEGRADED stays so unless hosts mid-change, and moving, account for the whole shortfall."""
    claims = [h for h in hosts if h.converging]
    moving = [h for h in claims if h.name not in stalled]
    if stalled:
        names = ", ".join(sorted(stalled)[:5]) + (" ..." if len(stalled) > 5 else "")
        message = f"{message}; no progress in {STALL_SECONDS:.0f} s from host(s) that claim a change: {names}"
    if not moving or count.online > expectation.expected:
        return DEGRADED, message
    # the fleet's own figure, never a VM's claim: a guest attribute saying 99999 must not cover a shortfall
    pending = sum(max(0, h.planned_target_agents - (h.running or 0)) for h in moving)
    if count.online + pending < expectation.min_online:
        return DEGRADED, message
    names = ", ".join(h.name for h in moving[:5]) + (" ..." if len(moving) > 5 else "")
    return CONVERGING, f"{message}; {len(moving)} host(s) mid-change ({names}) account for the shortfall"


def check_once(expectation: Expectation, deadline: float, per_host: bool = True,
               progress: Progress | None = None) -> Report:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        count = Poller(expectation.stats_url).fetch(deadline)
    except StatsError as exc:
        return Report(FAILED, f"could not check: {exc}", expectation, checked_at=now,
                      settled=isinstance(exc, StatsContractError))
    verdict, message = judge(expectation, count)
    report = Report(verdict, message, expectation, count, checked_at=now)
    if per_host and (expectation.hosts or expectation.pools) and expectation.project:
        try:
            with connected(deadline=max(deadline, time.monotonic() + COMPUTE_SECONDS)) as api:
                report.hosts = read_hosts(api, expectation.project, list(expectation.hosts), list(expectation.pools))
                report.per_host = "guest attributes"
                if expectation.rendezvous:
                    report.registry_restored_from = read_registry_restore(api, expectation.project,
                                                                          *expectation.rendezvous)
                vms = [(h.name, h.zone) for h in report.hosts if h.zone]
                report.script_problems, report.script_unread = audit(
                    api, expectation.project, vms + ([expectation.rendezvous] if expectation.rendezvous else []))
            stalled = (progress or Progress()).stalled(report.hosts, time.monotonic())
            if verdict == DEGRADED:
                report.verdict, report.message = converging(expectation, count, report.hosts, message, stalled)
            if report.script_problems:
                report.verdict = DEGRADED
                report.message = (f"{report.message}; {len(report.script_problems)} instance- or zone-level "
                                  "startup script(s) found (below)")
        except NoCredentialsError as exc:
            report.per_host = f"skipped: no Google credentials ({exc})"
    elif per_host and (expectation.hosts or expectation.pools):
        report.per_host = "skipped: the outputs name no project"
    return report


def check(expectation: Expectation, wait: float, interval: float, per_host: bool = True) -> Report:
    """Check until the verdict is ok or `wait` seconds have passed; the last check's report.

    Every request is bounded by the overall deadline; with `wait` 0 one check gets up to 10 s of retries."""
    start = time.monotonic()
    deadline = start + (wait if wait > 0 else 10.0)
    progress = Progress()
    while True:
        report = check_once(expectation, deadline, per_host, progress)
        remaining = deadline - time.monotonic()
        if report.verdict == OK or report.settled or wait <= 0 or remaining <= interval:
            break
        time.sleep(interval)
    if report.verdict == CONVERGING and wait > 0:  # waited as long as asked: a change that outlasts it is a finding
        moving = ", ".join(h.name for h in report.hosts if h.converging)
        report.verdict = DEGRADED
        report.message = f"{report.message}; still mid-change when --wait ({wait:g} s) ran out: {moving}"
    return report
