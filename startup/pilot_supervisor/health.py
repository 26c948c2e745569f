"""What a swarm host reports: its status file, its guest attributes (for `fleet verify`), and the HTTP endpoint
that answers /healthz (a managed group's autohealing), /status and /metrics (Prometheus). Every name here comes
from the rendered VM contract."""

from __future__ import annotations

import http.client
import json
import math
import os
import threading
import time
import urllib.request
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pilot_supervisor.contract import contract, guest_attribute
from pilot_supervisor.journal import log
from pilot_supervisor.pacing import rampup_seconds

if TYPE_CHECKING:
    from pilot_supervisor.supervisor import Supervisor


def status(sup: Supervisor) -> dict[str, Any]:
    running = sum(1 for i in sup.view if i < sup.config.target_agents)
    processes = sum(len(pids) for pids in sup.view.values())
    values = {"target_agents": sup.config.target_agents, "running": running, "processes": processes,
              "restarts": sup.restarts, "degraded": sup.faults.listing(),
              "stopping": sup.stopping.is_set(), "updated": time.time(), "ticks": sup.ticks,
              "tick_seconds": round(sup.last_tick_seconds, 6), "version": sup.config.version,
              "rollout": sup.rollout_status(),
              # who the agents run as, and what decides that a process is one (privilege.py)
              "agents_user": sup.user.name if sup.user else "", "agents_counted_by": sup.counted_by,
              "registration_addresses": list(sup.config.registration_addresses),
              # the supervisor program (upgrade.py): its sha256, and a newer one staged (running soon) or refused
              "supervisor": {"digest": sup.supervisor_digest,
                             "upgrade": {k: v for k, v in sup.upgrade.items() if k != "path"}},
              # Compute Engine is preempting this Spot VM: its agents were stopped for it, on purpose
              "preempted": bool(sup.preempted_at)}
    return {name: values[name] for name in contract()["status_fields"]}


def healthy(sup: Supervisor) -> bool:
    """Running >= target x threshold; or, so that a group's autohealing does not recreate a VM that is doing what
    it was asked, a start-up (or a raised target) still on schedule, or a rollout with no more than its one batch
    down."""
    now = status(sup)
    if sup.threads_down:  # never silent: a dead watcher is red until it is back (the loop restarts it at once)
        return False
    if now["running"] >= math.ceil(now["target_agents"] * sup.config.health_threshold):
        return True
    if sup.stopping.is_set():
        return False
    if sup.rollout is not None and now["running"] >= now["target_agents"] - sup.batch_size:
        return True
    ramping = time.monotonic() - sup.started < rampup_seconds(sup.config)
    return sup.config.healthy_during_rampup and ramping


def report(sup: Supervisor, now: float, force: bool = False) -> None:
    current = status(sup)
    path = Path(sup.config.run_dir) / "status.json"
    tmp = path.with_suffix(".tmp")
    with sup.faults.guard("status-write"):  # a full run directory: the status waits, the agents do not
        tmp.write_text(json.dumps(current, sort_keys=True) + "\n")
        tmp.replace(path)
    if not sup.config.guest_attributes_url or (now < sup.next_publish and not force):
        return
    sup.next_publish = now + sup.config.guest_attribute_interval_seconds
    rollout = current["rollout"]
    values = {guest_attribute("target_agents"): str(current["target_agents"]),
              guest_attribute("running_agents"): str(current["running"]),
              guest_attribute("restarts"): str(current["restarts"])}
    if rollout:  # e.g. "rolling 1200/3000: version 1.17.0 -> 1.18.0", "failed ...: ...", "done ..."
        progress = f" {rollout['done']}/{rollout['of']}" if "of" in rollout else ""
        values[guest_attribute("rollout")] = f"{rollout['state']}{progress}: {rollout['reason']}"[:1000]
    for name, value in values.items():
        if sup.published.get(name) != value and put_guest_attribute(sup.config.guest_attributes_url, name, value):
            sup.published[name] = value


def put_guest_attribute(base_url: str, key: str, value: str) -> bool:
    request = urllib.request.Request(f"{base_url.rstrip('/')}/{key}", data=value.encode(),
                                     method="PUT", headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=3):
            return True
    except (OSError, http.client.HTTPException) as exc:
        log("guest-attribute-failed", key=key, error=f"{type(exc).__name__}: {exc}")
        return False


def metrics(sup: Supervisor) -> str:
    """Prometheus text: the supervisor's counts, the agents' total RSS, the host's memory (read per scrape)."""
    current = status(sup)
    page = os.sysconf("SC_PAGE_SIZE")
    rss = 0
    for pids in sup.view.values():
        for pid in pids:
            try:
                with open(f"/proc/{pid}/statm") as handle:
                    rss += int(handle.read().split()[1]) * page
            except (OSError, ValueError, IndexError):
                continue
    meminfo: dict[str, int] = {}
    with suppress(OSError), open("/proc/meminfo") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            meminfo[name] = int(rest.split()[0]) * 1024
    version = current["version"].replace("\\", "").replace('"', "")
    samples: dict[str, tuple[str, object]] = {
        "target_agents": ("", current["target_agents"]),
        "running_agents": ("", current["running"]),
        "restarts": ("", current["restarts"]),
        "agents_rss": ("", rss),
        "host_memory_available": ("", meminfo.get("MemAvailable", 0)),
        "host_memory_total": ("", meminfo.get("MemTotal", 0)),
        "ticks": ("", sup.ticks),
        "rollout_in_progress": ("", int(sup.rollout is not None)),
        "rollout_done": ("", current["rollout"].get("done", 0)),
        "rollout_total": ("", current["rollout"].get("of", 0)),
        "tick_seconds": ("", round(sup.last_tick_seconds, 6)),
        "daemon_info": (f'{{version="{version}"}}', 1),
        "faults": ("", len(current["degraded"])),
    }
    text = ""
    for field, (labels, value) in samples.items():
        metric = contract()["metrics"][field]
        text += f"# HELP {metric['name']} {metric['help']}\n# TYPE {metric['name']} {metric['kind']}\n" \
                f"{metric['name']}{labels} {value}\n"
    return text


def serve_health(sup: Supervisor) -> ThreadingHTTPServer | None:
    """The endpoint on its own thread; None if the host has no health port, or if it cannot be served yet (then it
    is the fault `health-endpoint` until a later call serves it)."""
    config = sup.config
    if not config.health_port:
        return None

    class Health(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/metrics":
                self.reply(200, metrics(sup).encode(), "text/plain; version=0.0.4")
                return
            if path not in ("/healthz", "/status"):
                self.send_error(404)
                return
            ok = path == "/status" or healthy(sup)
            self.reply(200 if ok else 503, (json.dumps(status(sup), sort_keys=True) + "\n").encode(),
                       "application/json")

        def reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    try:
        server = ThreadingHTTPServer((config.health_address, config.health_port), Health)
    except OSError as exc:  # the port is taken: the agents are supervised all the same, and the loop tries again
        sup.faults.record("health-endpoint", f"cannot serve on port {config.health_port}: {exc.strerror or exc}")
        return None
    sup.faults.clear("health-endpoint")
    threading.Thread(target=server.serve_forever, daemon=True, name="health").start()
    return server
