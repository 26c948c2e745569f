"""The Ops Agent's receiver config (fleet/monitoring/ops_agent.py): within what the Ops Agent's receiver takes, a
config Prometheus' own promtool passes, and relabelling that real Prometheus turns into the fleet's labels; and the
plan, which gives it to every VM of a stack that asks and to none of one that does not. The boot path's side is in
tests/test_boot_path.py."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.facts import pilot
from fleet.monitoring.alerts import Timings
from fleet.monitoring.ops_agent import RECEIVER, ops_agent_config
from fleet.vm_contract import MetadataKey
from testbed.boot_sandbox import free_tcp_port
from tests.conftest import REPO, load_stack_config, run_fleet
from tests.test_monitoring import promtool

PROMETHEUS = REPO / ".cache/prometheus/usr/bin/prometheus"
INSTANCE = "gcp:compute/instance:Instance"
TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"


def scrape_of(config: dict[str, Any]) -> dict[str, Any]:
    receiver = config["metrics"]["receivers"][RECEIVER]
    assert receiver["type"] == "prometheus"
    assert config["metrics"]["service"]["pipelines"][RECEIVER] == {"receivers": [RECEIVER]}
    return dict(receiver["config"])


@pytest.mark.parametrize(("role", "port", "job"), [(pilot.ROLE_SWARM, 8081, "pilot-agents"),
                                                   (pilot.ROLE_RENDEZVOUS, 3000, "pilot-rendezvous")])
def test_the_receiver_is_within_what_the_ops_agent_takes_and_passes_promtool(role: str, port: int, job: str,
                                                                           tmp_path: Path) -> None:
    """The Ops Agent's receiver refuses (confgenerator/prometheus.go): service discovery other than static_configs,
    rule_files, remote read or write, honor_labels, relabelling onto location, namespace or cluster; it raises a
    scrape interval under 10 s."""
    scrape = scrape_of(ops_agent_config(role, port, Timings().changed("1s", [])))
    assert set(scrape) == {"scrape_configs"}
    (job_config,) = scrape["scrape_configs"]
    assert set(job_config) == {"job_name", "scrape_interval", "static_configs", "relabel_configs"}
    assert job_config["job_name"] == job and job_config["static_configs"] == [{"targets": [f"127.0.0.1:{port}"]}]
    assert job_config["scrape_interval"] == "10s"  # the bed's 1 s is under the Ops Agent's floor
    assert not {r["target_label"] for r in job_config["relabel_configs"]} & {"location", "namespace", "cluster"}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(scrape))
    check = promtool("check", "config", str(path))
    assert check.returncode == 0, check.stdout + check.stderr


@contextmanager
def metrics_server() -> Iterator[int]:
    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"pilot_agents_running 2\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


# What the Ops Agent adds to each static target: the VM's own metadata (resourcedetector/gce_detector.go,
# PrometheusStyleMetadata), here of a pool's VM (Compute Engine's `created-by` names its group manager).
OPS_AGENT_LABELS = {
    "__meta_gce_project": "pilot-fleet-scale", "__meta_gce_instance_name": "scale-e2-highmem-8-x1b2",
    "__meta_gce_zone": "us-central1-b", "__meta_gce_instance_id": "1234567890",
    "__meta_gce_machine_type": "e2-highmem-8",
    "__meta_gce_metadata_created_by": "projects/123456789/regions/us-central1/instanceGroupManagers/scale-e2-highmem-8",
    "location": "us-central1-b", "namespace": "1234567890/scale-e2-highmem-8-x1b2", "cluster": "__gce__",
    "instance_name": "scale-e2-highmem-8-x1b2", "machine_type": "e2-highmem-8"}


def test_real_prometheus_relabels_what_the_ops_agent_adds_into_the_fleets_labels(tmp_path: Path) -> None:
    """Real Prometheus (Debian's, the relabelling code the Ops Agent's receiver runs) given the receiver's scrape
    config with the labels the Ops Agent adds to its target, as the agent adds them."""
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS} is missing: run `bash scripts/dev.sh test`, which unpacks Debian's prometheus")
    with metrics_server() as port:
        scrape = scrape_of(ops_agent_config(pilot.ROLE_SWARM, port))
        scrape["scrape_configs"][0]["static_configs"][0]["labels"] = OPS_AGENT_LABELS
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(scrape))
        web = free_tcp_port()
        proc = subprocess.Popen([str(PROMETHEUS), f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
                                stdout=subprocess.DEVNULL, stderr=(tmp_path / "log").open("wb"))
        try:
            labels = None
            deadline = time.monotonic() + 30
            while labels is None:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()[-2000:]
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/v1/targets", timeout=2) as answer:
                        active = json.load(answer)["data"]["activeTargets"]
                    labels = active[0]["labels"] if active else None
                except OSError:
                    pass
                if labels is None:
                    time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert {k: labels[k] for k in ("pilot_fleet", "pilot_host", "pilot_zone", "pilot_pool", "job")} == {
        "pilot_fleet": "pilot-fleet-scale", "pilot_host": "scale-e2-highmem-8-x1b2", "pilot_zone": "us-central1-b",
        "pilot_pool": "scale-e2-highmem-8", "job": "pilot-agents"}


def vm_metadata(plan: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {r["name"]: r["inputs"]["metadata"] for r in plan["resources"] if r["type"] in (INSTANCE, TEMPLATE)}


@pytest.mark.plan
def test_a_stack_that_asks_gives_every_vm_the_pinned_agent_and_its_roles_receiver(planned: Any) -> None:
    """scale asks (monitoring.opsAgentVersion); prod does not, and no VM of it carries the attributes."""
    vms = vm_metadata(planned("scale"))
    assert len(vms) == 2  # the rendezvous and the pool's template
    for md in vms.values():
        assert md[MetadataKey.OPS_AGENT_VERSION] == "2.70.0"
        role, config = md[MetadataKey.ROLE], json.loads(md[MetadataKey.OPS_AGENT_CONFIG])
        port = pilot.SUPERVISOR_HEALTH_PORT if role == pilot.ROLE_SWARM else pilot.DASHBOARD_PORT
        assert config == ops_agent_config(role, port)
    assert not any(MetadataKey.OPS_AGENT_VERSION in md or MetadataKey.OPS_AGENT_CONFIG in md
                   for md in vm_metadata(planned("prod")).values())


@pytest.mark.plan
def test_turning_the_ops_agent_on_is_named_as_a_next_boot_change_of_every_vm(program_with_stack: Any,
                                                                            tmp_path: Path) -> None:
    """The boot path installs it (root, a package): `plan --compare` says which VMs take it at their next boot."""
    old = tmp_path / "old.json"
    assert run_fleet("plan", "--stack", "prod", "--no-policy", "--json", str(old)).returncode == 0
    config = copy.deepcopy(load_stack_config("prod"))
    config["pilot-fleet:monitoring"] = {"opsAgentVersion": "2.70.0"}
    program = program_with_stack(config)
    result = run_fleet("plan", "--stack", "test", "--program", str(program), "--no-policy", "--compare", str(old))
    assert result.returncode == 0, result.stderr
    report = result.stdout.split("\nNext boot only")[1]
    named = set(re.findall(r"^    ([a-z0-9-]+): .*pilot-ops-agent-version", report, re.M))
    assert named == {"swarm-1", "swarm-2", "swarm-3", "pilot-rendezvous"}, report
    # the receiver's config is named by its size, not printed: a line per VM stays readable
    assert re.search(r"pilot-ops-agent-config unset -> \([0-9,]+ characters\)", report) and len(report) < 2000
