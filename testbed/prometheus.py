"""A real Prometheus in the whole-fleet test bed: Debian's `prometheus` server (the package scripts/dev.sh unpacks for
promtool), given exactly what `fleet monitoring` wrote from the plan's outputs, merged into a prometheus.yml as the
README says (`prometheus-scrape.yml` into it, its rule file with it). It runs in the rendezvous VM's network
namespace, as a Prometheus on that VM would: the supervisors' health ports at their internal addresses (the file
service discovery's targets), the rendezvous' /metrics on its loopback, as the README says it is reached."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fleet.monitoring.prometheus import SCRAPE_CONFIG
from testbed.vm_host import Host
from testbed.vm_image import REPO, TestBedError

PROMETHEUS = REPO / ".cache" / "prometheus" / "usr" / "bin" / "prometheus"
PORT = 9090


@dataclass
class Prometheus:
    host: Host  # whose network namespace it runs in
    proc: subprocess.Popen[bytes]

    def api(self, path: str, **query: str) -> Any:
        """GET /api/v1/PATH (from inside that namespace); the answer's `data`."""
        url = f"http://127.0.0.1:{PORT}/api/v1/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        result = subprocess.run(["nsenter", "-t", str(self.host.leader), "-n", "--", "curl", "-fsS", "--max-time",
                                 "5", url], capture_output=True, text=True, timeout=15, check=False)
        if result.returncode != 0:
            raise TestBedError(f"Prometheus did not answer {url}: {result.stderr.strip()}")
        return json.loads(result.stdout)["data"]

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", state="active")["activeTargets"])

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"].get("alertname") == name]


@contextmanager
def prometheus_on(host: Host, plan_file: Path, base: Path, *monitoring_args: str) -> Iterator[Prometheus]:
    """Prometheus on HOST's network namespace with the files `fleet monitoring --outputs PLAN_FILE
    MONITORING_ARGS` writes; rules evaluated every second (the shipped alert timings are `fleet monitoring`'s
    settings: the bed shortens them with --scrape-interval and --alert-for)."""
    if not PROMETHEUS.exists():
        raise TestBedError(f"{PROMETHEUS} is missing: run `bash scripts/dev.sh test`, which unpacks Debian's "
                           "prometheus")
    files = base / "monitoring"
    made = subprocess.run([sys.executable, "-m", "fleet", "monitoring", "--outputs", str(plan_file), "--out",
                           str(files), *monitoring_args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    if made.returncode != 0:
        raise TestBedError(f"fleet monitoring failed: {made.stdout}{made.stderr}")
    scrape = yaml.safe_load((files / SCRAPE_CONFIG).read_text())
    config = base / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"evaluation_interval": "1s"}, **scrape}, sort_keys=False))
    with open(base / "prometheus.log", "ab") as log:
        proc = subprocess.Popen(["nsenter", "-t", str(host.leader), "-n", "--", str(PROMETHEUS),
                                 f"--config.file={config}", f"--storage.tsdb.path={base / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{PORT}"], stdout=log, stderr=subprocess.STDOUT)
    server = Prometheus(host, proc)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                server.api("status/runtimeinfo")
                break
            except TestBedError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise TestBedError("Prometheus did not come up: "
                                       f"{(base / 'prometheus.log').read_text(errors='replace')[-2000:]}") from None
                time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
