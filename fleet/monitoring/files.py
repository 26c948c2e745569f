"""What `python -m fleet monitoring` writes from the stack outputs: Prometheus' service discovery, scrape config and
rules (prometheus.py), and the Grafana dashboard (grafana.py), each file replaced whole."""

from __future__ import annotations

from pathlib import Path

from fleet.monitoring.alerts import MonitoringError, Timings, watched_by
from fleet.monitoring.grafana import DASHBOARD, grafana_dashboard
from fleet.monitoring.prometheus import prometheus_files
from fleet.outputs import StackOutputs


def write_monitoring(outputs: StackOutputs, out: Path, timings: Timings | None = None) -> list[Path]:
    files = {**prometheus_files(outputs, out, timings), DASHBOARD: grafana_dashboard(watched_by(outputs))}
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in files.items():  # each file replaced whole: Prometheus never reads half a file
            tmp = out / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(out / name)
            written.append(out / name)
    except OSError as exc:
        raise MonitoringError(f"cannot write to {out}: {exc.strerror}") from None
    return written
