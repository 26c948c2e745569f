"""One tick of the supervisor, put together: take a pending live change, reap, list, trim, kill what ignored
SIGTERM, mark the registered, roll, start a paced round, report. The modules it calls read the supervisor's state;
it alone calls them, so none of them imports another's caller."""

from __future__ import annotations

import time

from pilot_supervisor import health, live, rolling
from pilot_supervisor.supervisor import Supervisor


def tick(sup: Supervisor) -> None:
    now = time.monotonic()
    live.take_pending(sup, now)
    sup.reap(now)
    if sup.batch_failure:
        if sup.rollout is not None:
            rolling.fail(sup, sup.batch_failure)
        sup.batch_failure = ""
    if now >= sup.next_scan:
        sup.running = sup.listing()
        sup.next_scan = now + sup.config.scan_seconds
        sup.fingerprints = {pid: fp for pid, fp in sup.fingerprints.items()
                            if any(pid in pids for pids in sup.running.values())}
    sup.trim()
    sup.escalate(now)
    sup.mark_registered()
    if sup.persist_pending:
        sup.persist()
    if not sup.stopping.is_set():
        rolling.roll(sup, now)
        sup.start_round(now)
    sup.publish_view()
    health.report(sup, now)
