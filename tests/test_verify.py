"""`python -m fleet verify` against a real HTTP server on loopback (testbed/stats_server.py)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.stats_server import Answer, StatsServer
from tests.conftest import run_fleet

REAL = {"total_nodes": 10, "active_nodes": 10, "total_trust_links": 0, "total_requests": 5, "unique_tags": 0,
        "task_executors": 0, "networks": [], "nodes": [], "edges": [], "uptime_secs": 60}
LEGACY = {"total_agents": 9523, "total_networks": 47, "online_agents": 9401, "connections_active": 234}


@pytest.fixture
def server() -> Iterator[StatsServer]:
    with StatsServer([Answer.stats(**REAL)]).serving() as running:
        yield running


def verify(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_fleet("verify", *args, stdin=stdin or "", env=env, timeout=timeout)


def report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(result.stdout)


def test_real_rendezvous_shape_ok(server: StatsServer) -> None:
    result = verify("--stats-url", server.url, "--expected", "10", "--json")
    assert result.returncode == 0, result.stderr
    doc = report(result)
    assert (doc["verdict"], doc["online"], doc["total"], doc["responseShape"]) == ("ok", 10, 10, "rendezvous")


def test_legacy_shape_is_accepted_and_named(server: StatsServer) -> None:
    server.set(Answer.stats(**LEGACY))
    result = verify("--stats-url", server.url, "--expected", "9500")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == ("OK: 9,401 of 9,500 agents online (>= 9,025, threshold 0.95; "
                                             "legacy stats shape)")


def test_count_below_threshold_is_degraded(server: StatsServer) -> None:
    server.set(Answer.stats(**{**REAL, "active_nodes": 8}))
    result = verify("--stats-url", server.url, "--expected", "10", "--json")
    assert result.returncode == 1
    doc = report(result)
    assert (doc["verdict"], doc["online"], doc["minOnline"]) == ("degraded", 8, 10)


def test_server_errors_then_success(server: StatsServer) -> None:
    server.set(Answer(500, b"oops"), Answer(503, b""), Answer.stats(**REAL))
    result = verify("--stats-url", server.url, "--expected", "10", "--json")
    assert result.returncode == 0 and report(result)["verdict"] == "ok"
    assert len([p for p, _ in server.requests if p == "/api/stats"]) == 3


@pytest.mark.parametrize(("body", "reason"), [
    (b"<html>502 Bad Gateway</html>", "malformed JSON (Expecting value at line 1 column 1)"),
    (b"", "an empty body"),
    (b'{"active_nodes": "lots", "total_nodes": 3}', "field active_nodes: Input should be a valid integer"),
    (b'{"hello": 1}', "neither active_nodes/total_nodes (rendezvous) nor online_agents/total_agents (legacy)"),
])
def test_garbage_is_one_clear_line_and_exit_2(server: StatsServer, body: bytes, reason: str) -> None:
    server.set(Answer(200, body))
    result = verify("--stats-url", server.url, "--expected", "10", "--wait", "1.5")
    assert result.returncode == 2 and result.stderr == ""
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAILED: could not check: ") and reason in lines[0], lines


def test_slow_server_and_the_deadline_is_honoured_to_within_a_second(server: StatsServer) -> None:
    server.set(Answer(200, json.dumps(REAL).encode(), delay=30))
    start = time.monotonic()
    result = verify("--stats-url", server.url, "--expected", "10", "--wait", "3", "--json")
    elapsed = time.monotonic() - start
    assert result.returncode == 2 and "timed out" in report(result)["message"]
    assert 3.0 <= elapsed < 4.0 + 1.5, elapsed  # + interpreter start-up, measured around the whole process


def test_unreachable_url(tmp_path: Path) -> None:
    result = verify("--stats-url", "http://127.0.0.1:9/api/stats", "--expected", "3", "--wait", "1")
    assert result.returncode == 2 and "cannot connect (Connection refused)" in result.stdout


def test_wait_polls_until_the_fleet_is_up(server: StatsServer) -> None:
    server.set(Answer.stats(**{**REAL, "active_nodes": 2}), Answer.stats(**{**REAL, "active_nodes": 6}),
               Answer.stats(**REAL))
    result = verify("--stats-url", server.url, "--expected", "10", "--wait", "20", "--interval", "0.2", "--json")
    assert result.returncode == 0 and report(result)["online"] == 10


def _outputs(planned: Any, server: StatsServer, stack: str = "prod") -> dict[str, Any]:
    outputs = dict(planned(stack)["outputs"])
    outputs["statsUrl"] = server.url
    return outputs


def test_outputs_piped_in_give_expected_and_threshold(planned: Any, server: StatsServer) -> None:
    server.set(Answer.stats(**{**REAL, "active_nodes": 9100, "total_nodes": 9500}))
    result = verify("--no-per-host", "--json", stdin=json.dumps(_outputs(planned, server)))
    assert result.returncode == 0, result.stdout + result.stderr
    doc = report(result)
    assert (doc["expected"], doc["threshold"], doc["minOnline"]) == (9500, 0.95, 9025)


def test_overrides_win_over_the_outputs(planned: Any, server: StatsServer, tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(_outputs(planned, server)))
    result = verify("--outputs", str(path), "--expected", "12", "--no-per-host", "--json")
    assert result.returncode == 1 and report(result)["minOnline"] == 12  # 10 online of 12 x 0.95


@pytest.mark.parametrize(("text", "message"), [
    ("not json", "stdin: not JSON (Expecting value at line 1)"),
    ('{"schemaVersion": 3}',
     "stdin: schemaVersion is 3; this version of pilot-fleet reads version 2 (see 'Stack outputs' in README.md)"),
    ('{"schemaVersion": 1, "expectedAgents": 3}',
     "stdin: schemaVersion is 1, written before pools' targetAgents meant agents per VM and the outputs carried "
     "their ports; `pulumi up` with this version writes schema 2 (see 'Stack outputs' in README.md)"),
    ('{"schemaVersion": 2, "expectedAgents": 3}', "stdin: statsUrl: Field required"),
])
def test_bad_outputs_are_one_line_and_exit_2(text: str, message: str) -> None:
    result = verify("--outputs", "-", stdin=text)
    assert result.returncode == 2 and result.stderr.strip() == f"error: {message}" and result.stdout == ""


def test_nothing_to_check_says_what_to_give() -> None:
    result = verify()
    assert result.returncode == 2 and "nothing to check: give --outputs FILE" in result.stderr


def test_shortfall_is_attributed_to_a_host_through_guest_attributes(planned: Any, server: StatsServer,
                                                                    tmp_path: Path) -> None:
    server.set(Answer.stats(**{**REAL, "active_nodes": 8100, "total_nodes": 9500}))
    server.guest_attributes = {
        "swarm-1": {"target-agents": "3000", "agents-running": "3000", "agents-restarts": "0"},
        "swarm-2": {"target-agents": "5000", "agents-running": "3600", "agents-restarts": "41"},
        "swarm-3": {"target-agents": "1500", "agents-running": "1500", "agents-restarts": "0",
                    "bypassed-startup-script": "startup-script"},
    }
    env = {"PILOT_FLEET_COMPUTE_API": f"{server.base}/compute/v1", "PILOT_FLEET_ACCESS_TOKEN": "test-token"}
    html = tmp_path / "report.html"
    result = verify("--outputs", "-", "--html", str(html), stdin=json.dumps(_outputs(planned, server)), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[3:6]}
    assert rows["swarm-2"].split()[1:4] == ["5,000", "3,600", "72.0%"] and "41 restarts" in rows["swarm-2"]
    assert "BYPASSED STARTUP SCRIPT: startup-script" in rows["swarm-3"]
    asked = [(p, auth) for p, auth in server.requests if "getGuestAttributes" in p]
    assert len(asked) == 4 and all(auth == "Bearer test-token" for _, auth in asked)  # and the rendezvous'
    assert "registry:" not in result.stdout  # its store was not restored
    assert asked[1][0] == ("/compute/v1/projects/pilot-fleet-prod/zones/us-central1-a/instances/swarm-2/"
                           "getGuestAttributes?queryPath=pilot%2F")
    page = html.read_text()
    assert page.count("<rect") == 2 * 4 and "3,600 / 5,000" in page and "degraded" in page


def test_a_registry_restored_from_a_generation_is_reported(planned: Any, server: StatsServer) -> None:
    """The rendezvous' guest attribute registry-restored-from (its unit restored the store before it started) is in
    the report, escaped, and in --json; it changes no verdict (the registry kept its identities)."""
    server.set(Answer.stats(**{**REAL, "active_nodes": 9500, "total_nodes": 9500}))
    restored = "restored registry-20261202T081500Z.json (9500 public keys, 240 s old)\x1b[2J"
    server.guest_attributes = {"pilot-rendezvous": {"registry-restored-from": restored}}
    env = {"PILOT_FLEET_COMPUTE_API": f"{server.base}/compute/v1", "PILOT_FLEET_ACCESS_TOKEN": "test-token"}
    result = verify("--outputs", "-", stdin=json.dumps(_outputs(planned, server)), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("registry: its store was restored at the rendezvous' last start: restored "
            "registry-20261202T081500Z.json (9500 public keys, 240 s old)\\x1b[2J") in result.stdout
    doc = report(verify("--outputs", "-", "--json", stdin=json.dumps(_outputs(planned, server)), env=env))
    assert doc["registryRestoredFrom"].startswith("restored registry-20261202T081500Z.json")


def test_a_vm_with_an_instance_level_startup_script_fails_verify_by_name(planned: Any, server: StatsServer) -> None:
    """The seed's ghost script, caught after the fact: every agent is online, but one VM of the fleet carries a
    `startup-script` of its own (an earlier deployment's), a VM of the project labelled as the fleet's but not in the
    outputs carries `user-data`, and a zone's metadata (instanceSettings) overrides the project's script. Each is
    named with its key, and the verdict is degraded (exit 1)."""
    server.set(Answer.stats(**{**REAL, "active_nodes": 9500, "total_nodes": 9500}))
    full = {"target-agents": "3000", "agents-running": "3000"}
    server.guest_attributes = {"swarm-1": full, "swarm-2": {**full, "target-agents": "5000", "agents-running": "5000"},
                               "swarm-3": {**full, "target-agents": "1500", "agents-running": "1500"}}
    server.metadata = {"swarm-1": {"pilot-role": "swarm"}, "swarm-3": {"pilot-role": "swarm"},
                       "pilot-rendezvous": {"pilot-role": "rendezvous"}}
    server.metadata["swarm-2"] = {"pilot-role": "swarm"}
    env = {"PILOT_FLEET_COMPUTE_API": f"{server.base}/compute/v1", "PILOT_FLEET_ACCESS_TOKEN": "test-token"}
    result = verify("--outputs", "-", stdin=json.dumps(_outputs(planned, server)), env=env)
    assert result.returncode == 0 and "SCRIPT" not in result.stdout, result.stdout  # a clean fleet
    assert "script audit" not in result.stdout  # every VM and zone was read
    server.metadata["swarm-2"] = {"pilot-role": "swarm", "startup-script": "#!/bin/bash\n..."}
    server.labelled = {("old-swarm-9", "us-central1-c"): {"user-data": "#cloud-config"}}
    server.zone_metadata = {"us-central1-a": {"startup-script": "echo zone"}}
    result = verify("--outputs", "-", stdin=json.dumps(_outputs(planned, server)), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("DEGRADED: 9,500 of 9,500 agents online")
    scripts = [line for line in result.stdout.splitlines() if line.startswith("SCRIPT: ")]
    assert [line.split(" carries ")[0].split(" has ")[0] for line in scripts] == [
        "SCRIPT: VM old-swarm-9 (us-central1-c)", "SCRIPT: VM swarm-2 (us-central1-a)", "SCRIPT: zone us-central1-a"]
    assert "script key user-data" in scripts[0] and "script key startup-script" in scripts[1]
    assert "zone-level metadata key startup-script" in scripts[2]
    asked = [p for p, _ in server.requests if "aggregated/instances" in p]
    assert asked and "labels.app" in asked[-1].replace("%2E", ".")


def test_without_credentials_per_host_is_skipped_not_fatal(planned: Any, server: StatsServer,
                                                           tmp_path: Path) -> None:
    env = {"NO_GCE_CHECK": "True", "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
           "GOOGLE_APPLICATION_CREDENTIALS": ""}
    result = verify("--outputs", "-", "--expected", "10", stdin=json.dumps(_outputs(planned, server)), env=env)
    assert result.returncode == 0
    assert "per host: skipped: no Google credentials" in result.stdout


def test_watch_prints_a_line_per_change(server: StatsServer) -> None:
    server.set(*(Answer.stats(**{**REAL, "active_nodes": n}) for n in (10, 10, 7, 7, 10)))
    result = verify("--stats-url", server.url, "--expected", "10", "--watch", "0.1", "--checks", "5")
    lines = result.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["ok", "degraded", "ok"], lines
    assert result.returncode == 0


@pytest.mark.parametrize("value", [True, "10", 10.0])
def test_a_count_that_is_not_a_whole_number_is_malformed(server: StatsServer, value: Any) -> None:
    server.set(Answer.stats(**{**REAL, "active_nodes": value}))
    result = verify("--stats-url", server.url, "--expected", "1", "--json", "--wait", "30")
    assert result.returncode == 2, result.stdout
    doc = report(result)
    assert doc["verdict"] == "failed" and "field active_nodes" in doc["message"] and "integer" in doc["message"]
    # a contract mismatch does not heal by waiting: one request, no retries up to the deadline
    assert len([p for p, _ in server.requests if p == "/api/stats"]) == 1


@pytest.mark.parametrize("expected", ["0", "-1"])
def test_an_expected_count_below_one_is_refused(server: StatsServer, expected: str) -> None:
    result = verify("--stats-url", server.url, "--expected", expected)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"argument --expected: '{expected}' must be positive" in result.stderr


def test_more_agents_than_expected_is_reported_and_with_max_over_a_finding(server: StatsServer) -> None:
    server.set(Answer.stats(**{**REAL, "active_nodes": 16, "total_nodes": 16}))
    reported = verify("--stats-url", server.url, "--expected", "10", "--json")
    assert reported.returncode == 0
    assert report(reported)["overExpected"] == 6 and "6 more than expected" in report(reported)["message"]
    within = verify("--stats-url", server.url, "--expected", "10", "--max-over", "6")
    assert within.returncode == 0
    judged = verify("--stats-url", server.url, "--expected", "10", "--max-over", "5", "--json")
    assert judged.returncode == 1
    doc = report(judged)
    assert doc["verdict"] == "degraded" and "6 more than expected, above --max-over 5" in doc["message"]


def test_outputs_that_expect_no_agents_cannot_be_verified(server: StatsServer, tmp_path: Path) -> None:
    outputs = {"schemaVersion": 2, "statsUrl": server.url, "expectedAgents": 0, "alertThreshold": 0.95,
               "hosts": [], "pools": [], "project": "p",
               "ports": {"registry": 9000, "beacon": 9001, "dashboard": 3000, "health": 8081}}
    result = verify("--outputs", "-", stdin=json.dumps(outputs))
    assert result.returncode == 2 and "the fleet expects 0 agents" in result.stderr, result.stderr


def test_a_pool_shortfall_names_the_vm_and_its_zone(planned: Any, server: StatsServer) -> None:
    """The 50,000-agent stack is one regional group: verify lists its VMs (listManagedInstances) and reads each one's
    guest attributes, so the short one is named with its zone."""
    outputs = _outputs(planned, server, "scale")
    (pool,) = outputs["pools"]
    per_vm = pool["targetAgents"]
    server.set(Answer.stats(**{**REAL, "active_nodes": 12 * per_vm + 1000, "total_nodes": 13 * per_vm}))
    zones = pool["zones"]
    vms = [(f"{pool['name']}-{i:04x}", zones[i % len(zones)]) for i in range(pool["size"])]
    server.managed_instances = {pool["name"]: vms}
    server.guest_attributes = {name: {"target-agents": str(per_vm), "agents-running": str(per_vm)} for name, _ in vms}
    short_vm, short_zone = vms[5]
    server.guest_attributes[short_vm]["agents-running"] = "1000"
    env = {"PILOT_FLEET_COMPUTE_API": f"{server.base}/compute/v1", "PILOT_FLEET_ACCESS_TOKEN": "test-token"}
    result = verify("--outputs", "-", stdin=json.dumps(outputs), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith(pool["name"] + "-")}
    assert len(rows) == pool["size"]
    assert rows[short_vm].split()[1:4] == [f"{per_vm:,}", "1,000", f"{1000 / per_vm:.1%}"]
    assert f"pool {pool['name']} in {short_zone}" in rows[short_vm]
    assert "per host: guest attributes" in result.stdout
    listed = [p for p, _ in server.requests if "listManagedInstances" in p]
    assert listed == [f"/compute/v1/projects/pilot-fleet-scale/regions/us-central1/instanceGroupManagers/"
                      f"{pool['name']}/listManagedInstances"]


def test_a_pool_vm_its_group_recreates_is_reported_as_such_not_as_a_loss(planned: Any, server: StatsServer) -> None:
    """A preempted Spot VM: stopped by Compute Engine, then recreated by its group on its state disk. Its shortfall
    is the recreation in progress (converging), named as such, and no guest attribute of it is asked for."""
    outputs = _outputs(planned, server, "scale")
    (pool,) = outputs["pools"]
    per_vm = pool["targetAgents"]
    server.set(Answer.stats(**{**REAL, "active_nodes": 12 * per_vm, "total_nodes": 13 * per_vm}))
    vms = [(f"{pool['name']}-{i:04x}", pool["zones"][i % len(pool["zones"])]) for i in range(pool["size"])]
    server.managed_instances = {pool["name"]: vms}
    server.guest_attributes = {name: {"target-agents": str(per_vm), "agents-running": str(per_vm)} for name, _ in vms}
    gone = vms[3][0]
    del server.guest_attributes[gone]
    server.instance_states = {gone: ("RECREATING", "TERMINATED")}
    env = {"PILOT_FLEET_COMPUTE_API": f"{server.base}/compute/v1", "PILOT_FLEET_ACCESS_TOKEN": "test-token"}
    result = verify("--outputs", "-", stdin=json.dumps(outputs), env=env)
    assert result.returncode == 3 and result.stdout.startswith("CONVERGING:"), result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith(gone))
    assert "being recreated by its group (recreating, terminated)" in row, row
    assert not [p for p, _ in server.requests if f"/instances/{gone}/getGuestAttributes" in p]


def test_a_host_mid_rollout_is_reported_as_converging_not_short(planned: Any, server: StatsServer) -> None:
    """Day two: a shortfall that hosts in the middle of a change account for is `converging` (exit 3), each such
    host named with its rollout or its pending target; one that they do not account for stays `degraded`."""
    env = {"PILOT_FLEET_COMPUTE_API": f"{server.base}/compute/v1", "PILOT_FLEET_ACCESS_TOKEN": "test-token"}
    server.guest_attributes = {
        "swarm-1": {"target-agents": "3000", "agents-running": "3000"},
        "swarm-2": {"target-agents": "5000", "agents-running": "4000",
                    "rollout": "rolling 1200/5000: version 1.17.0 -> 1.18.0"},
        "swarm-3": {"target-agents": "1000", "agents-running": "1000"},  # the stack says 1500: not there yet
    }
    # what `pulumi up` set: swarm-2's metadata asks for 1.18.0, swarm-3's for 1,500 agents
    server.metadata = {"swarm-2": {"pilot-version": "1.18.0", "pilot-target-agents": "5000"},
                       "swarm-3": {"pilot-version": "1.18.0", "pilot-target-agents": "1500"}}
    server.set(Answer.stats(**{**REAL, "active_nodes": 8000, "total_nodes": 9500}))
    result = verify("--outputs", "-", stdin=json.dumps(_outputs(planned, server)), env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout.startswith("CONVERGING: 8,000 of 9,500 agents online")
    assert "2 host(s) mid-change (swarm-2, swarm-3) account for the shortfall" in result.stdout
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[3:6]}
    assert "rolling 1200/5000: version 1.17.0 -> 1.18.0" in rows["swarm-2"]
    assert "converging: stack target 1,500" in rows["swarm-3"]
    # 1,500 more missing than the changes explain: degraded, as before
    server.set(Answer.stats(**{**REAL, "active_nodes": 6500, "total_nodes": 9500}))
    result = verify("--outputs", "-", stdin=json.dumps(_outputs(planned, server)), env=env)
    assert result.returncode == 1 and result.stdout.startswith("DEGRADED:"), result.stdout


def _gzip_bomb() -> bytes:
    """About 100 KB on the wire, 100 MB of spaces unpacked: a body that must not be read whole."""
    return gzip.compress(b" " * (100 << 20), compresslevel=9)


# verify as the client of an untrusted server (#23): each row one answer, the exit code and what the message names.
UNTRUSTED: dict[str, tuple[Callable[[], Answer], int, str]] = {
    "a body dripped a byte a second": (lambda: Answer(200, json.dumps(REAL).encode(), drip=1.0), 2,
                                       "gave up at the deadline; last: timed out"),
    "a redirect to another host": (lambda: Answer(302, b"", headers={"Location": "http://169.254.169.254/api/stats"}),
                                   2, "redirected to another host (http://169.254.169.254:80): not followed"),
    "a body over the cap": (lambda: Answer(200, b"[" + b"0," * (20 << 20) + b"0]"), 2, "answered more than 32 MiB"),
    "a gzip bomb": (lambda: Answer(200, _gzip_bomb(), headers={"Content-Encoding": "gzip"}), 2,
                    "answered more than 32 MiB (decompressed)"),
    "a body that is not UTF-8": (lambda: Answer(200, b'{"total_nodes": 10, "x": "\xff\xfe"}'), 2, "not UTF-8"),
    "a count of 5,000 digits": (lambda: Answer(200, b'{"total_nodes": ' + b"9" * 5000 + b', "active_nodes": 1}'), 2,
                                "JSON it cannot read"),
    "nesting 100,000 deep": (lambda: Answer(200, b"[" * 100_000), 2, "JSON it cannot read"),
    "more online than known": (lambda: Answer.stats(**{**REAL, "active_nodes": 200, "total_nodes": 3}), 2,
                               "active_nodes 200 is more than total_nodes 3"),
    "a key given twice": (lambda: Answer(200, b'{"total_nodes": 10, "active_nodes": 1, "active_nodes": 10}'), 2,
                          "duplicate key 'active_nodes'"),
}


@pytest.mark.parametrize("case", list(UNTRUSTED))
def test_verify_is_the_client_of_an_untrusted_server(case: str) -> None:
    make, code, named = UNTRUSTED[case]
    with StatsServer([make()]).serving() as server:
        started = time.monotonic()
        result = verify("--stats-url", server.url, "--expected", "10", "--wait", "3", timeout=60)
        took = time.monotonic() - started
    assert result.returncode == code, (result.stdout, result.stderr)
    assert named in result.stdout + result.stderr and "Traceback" not in result.stderr, (result.stdout, result.stderr)
    assert took < 3 + 8  # the deadline is one for the whole request, body included (plus the interpreter's start)


@pytest.mark.parametrize(("flags", "named"), [
    (["--wait", "inf"], "--wait: 'inf' must be between 0 and 604800 seconds"),
    (["--wait", "nan"], "--wait: 'nan' must be between 0 and 604800 seconds"),
    (["--watch", "1", "--checks", "0"], "--checks: '0' must be positive"),
    (["--watch", "0"], "--watch: '0' must be between 0.1 and 604800 seconds"),
    (["--checks", "2"], "--checks N counts the checks of --watch SECONDS"),
])
def test_verify_flags_out_of_bounds_are_one_line_and_exit_2(flags: list[str], named: str) -> None:
    result = verify("--stats-url", "http://127.0.0.1:9/api/stats", "--expected", "10", *flags)
    assert result.returncode == 2 and named in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(("data", "named"), [(b"\xff\xfe{}", "not UTF-8"), (b"[" * 100_000, "cannot be read")])
def test_unreadable_outputs_are_one_line_and_exit_2(tmp_path: Path, data: bytes, named: str) -> None:
    path = tmp_path / "outputs.json"
    path.write_bytes(data)
    result = verify("--outputs", str(path))
    assert result.returncode == 2 and named in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(("claims", "metadata"), [
    ({"rollout": "rolling 1/200: version 1.17.0 -> 1.18.0"}, {"pilot-version": "1.17.0"}),  # nothing asked it
    ({"rollout": "rolling 1/200: version 1.17.0 -> 1.18.0"}, None),  # its metadata cannot be read
    ({"rollout": "rolling 1/200: gogc"}, {"pilot-version": "1.18.0"}),  # a settings rollout: nothing to check
    ({"target-agents": "150"}, {"pilot-target-agents": "150"}),  # its metadata says 150: the stack's 200 never went
])
def test_a_vms_claim_of_a_change_its_metadata_does_not_back_covers_no_shortfall(
        monkeypatch: pytest.MonkeyPatch, claims: dict[str, str], metadata: dict[str, str] | None) -> None:
    """A VM claiming a rollout (or a target not yet taken up) is mid-change only if its instance metadata, as
    `pulumi up` set it (instances.get), asks for that change: 150 of 200 stays degraded otherwise."""
    from fleet.verify.check import Expectation, converging
    from fleet.verify.compute_api import connected
    from fleet.verify.guest_attributes import read_hosts
    from fleet.verify.stats import FleetCount

    attributes = {"target-agents": "200", "agents-running": "150", **claims}
    with StatsServer([Answer.stats()], guest_attributes={"vm": attributes},
                     metadata={"vm": metadata} if metadata is not None else {}).serving() as server:
        monkeypatch.setenv("PILOT_FLEET_COMPUTE_API", f"{server.base}/compute/v1")
        monkeypatch.setenv("PILOT_FLEET_ACCESS_TOKEN", "t")
        with connected() as api:
            (host,) = read_hosts(api, "p", [("vm", "z", 200)])
        asked = [path for path, _ in server.requests if path.endswith("/zones/z/instances/vm")]
    assert asked == ["/compute/v1/projects/p/zones/z/instances/vm"]  # the metadata was asked for
    assert (host.claims_rollout or host.claims_retarget) and not host.converging
    verdict, _ = converging(Expectation("http://x/api/stats", 200, 0.95), FleetCount(150, 200, "rendezvous"), [host],
                            "short")
    assert verdict == "degraded"


def test_a_vms_claimed_target_above_the_stacks_covers_no_shortfall(monkeypatch: pytest.MonkeyPatch) -> None:
    """A guest attribute saying 99999 made a host "mid-change" and its claimed target the pending figure: 150 of 200
    read as converging. The stack's own figure is the only one counted now, and a claim above it is no change in
    progress. Its text is printed escaped."""
    from fleet.verify.check import Expectation, converging
    from fleet.verify.compute_api import connected
    from fleet.verify.guest_attributes import read_hosts
    from fleet.verify.stats import FleetCount

    lying = {"target-agents": "99999", "agents-running": "150", "bypassed-startup-script": "x\x1b[2Jy"}
    with StatsServer([Answer.stats()], guest_attributes={"vm": lying}).serving() as server:
        monkeypatch.setenv("PILOT_FLEET_COMPUTE_API", f"{server.base}/compute/v1")
        monkeypatch.setenv("PILOT_FLEET_ACCESS_TOKEN", "t")
        with connected() as api:
            (host,) = read_hosts(api, "p", [("vm", "z", 200)])
    assert host.bypassed_script == "x\\x1b[2Jy"
    assert not host.retargeted and not host.converging
    verdict, _ = converging(Expectation("http://x/api/stats", 200, 0.95), FleetCount(150, 200, "rendezvous"), [host],
                            "short")
    assert verdict == "degraded"


def _endless_pages() -> Answer:
    return Answer(200, json.dumps({"managedInstances": [], "nextPageToken": "same-again"}).encode())


# verify as the client of an untrusted Compute Engine API (#31): each row one call's answer (by a fragment of its
# path), and what the report says of it. Every check ends within its deadline, without a traceback, and the verdict
# stays the stats' own (a VM that cannot be read is named, never counted).
HOSTILE_COMPUTE: dict[str, tuple[str, Callable[[], Answer], str]] = {
    "guest attributes dripped": ("/getGuestAttributes", lambda: Answer(200, b'{"queryValue": {"items": []}}' * 50,
                                                                       drip=0.5), "unreachable: Timeout"),
    "guest attributes nested 100,000 deep": ("/getGuestAttributes", lambda: Answer(200, b"[" * 100_000),
                                             "an unexpected document"),
    "guest attributes with a key twice": ("/getGuestAttributes",
                                          lambda: Answer(200, b'{"queryValue": {}, "queryValue": {"items": []}}'),
                                          "an unexpected document (duplicate key 'queryValue')"),
    "a group listing whose page token never ends": ("/listManagedInstances", _endless_pages,
                                                    "a page token it gave before"),
    "a project listing with a list for its items": ("/aggregated/instances",
                                                    lambda: Answer(200, b'{"items": [1, 2, 3]}'),
                                                    "items is not an object"),
    "a listing over the size cap": ("/aggregated/instances",
                                    lambda: Answer(200, b'{"items": {}, "x": "' + b"0" * (33 << 20) + b'"}'),
                                    "answered more than 32 MiB"),
}


@pytest.mark.parametrize("case", list(HOSTILE_COMPUTE))
def test_verify_is_the_client_of_an_untrusted_compute_api(planned: Any, case: str) -> None:
    fragment, make, named = HOSTILE_COMPUTE[case]
    with StatsServer([Answer.stats(**{**REAL, "active_nodes": 40_000, "total_nodes": 50_011})]).serving() as server:
        outputs = _outputs(planned, server, "scale")
        (pool,) = outputs["pools"]
        vms = [(f"{pool['name']}-{i:04x}", pool["zones"][i % 3]) for i in range(pool["size"])]
        server.managed_instances = {pool["name"]: vms}
        server.guest_attributes = {name: {"target-agents": str(pool["targetAgents"])} for name, _ in vms}
        server.compute_overrides = {fragment: make()}
        env = {"PILOT_FLEET_COMPUTE_API": f"{server.base}/compute/v1", "PILOT_FLEET_ACCESS_TOKEN": "test-token"}
        started = time.monotonic()
        result = verify("--outputs", "-", "--json", stdin=json.dumps(outputs), env=env, timeout=120)
        took = time.monotonic() - started
    assert "Traceback" not in result.stderr and result.returncode == 1, (result.stdout, result.stderr)
    assert named in result.stdout, result.stdout
    assert report(result)["verdict"] == "degraded"
    assert took < 10 + 30 + 5  # the stats' deadline, then the Compute Engine side's, and the interpreter's start


def test_a_claimed_change_that_does_not_move_stops_covering_the_shortfall(monkeypatch: pytest.MonkeyPatch) -> None:
    """Converging needs evidence: a VM whose claimed rollout backs its metadata, but whose report has not moved for
    STALL_SECONDS, covers no shortfall any more, and is named; one that moves goes on covering it."""
    from fleet.verify import check as checks
    from fleet.verify.compute_api import connected
    from fleet.verify.guest_attributes import read_hosts
    from fleet.verify.stats import FleetCount

    claim = {"target-agents": "200", "agents-running": "150", "rollout": "rolling 50/200: version 1.17.0 -> 1.18.0"}
    with StatsServer([Answer.stats()], guest_attributes={"vm": claim},
                     metadata={"vm": {"pilot-version": "1.18.0"}}).serving() as server:
        monkeypatch.setenv("PILOT_FLEET_COMPUTE_API", f"{server.base}/compute/v1")
        monkeypatch.setenv("PILOT_FLEET_ACCESS_TOKEN", "t")
        with connected() as api:
            (host,) = read_hosts(api, "p", [("vm", "z", 200)])
    assert host.converging
    expectation, count, progress = checks.Expectation("http://x", 200, 0.95), FleetCount(150, 200, "rendezvous"), \
        checks.Progress()

    def verdict(now: float, report: checks.HostReport) -> tuple[str, str]:
        return checks.converging(expectation, count, [report], "short", progress.stalled([report], now))

    assert verdict(0.0, host)[0] == "converging"
    assert verdict(checks.STALL_SECONDS - 1, host)[0] == "converging"
    stuck = verdict(checks.STALL_SECONDS, host)
    assert stuck[0] == "degraded" and "no progress in 300 s from host(s) that claim a change: vm" in stuck[1]
    moved = dataclasses.replace(host, running=160, rollout="rolling 60/200: version 1.17.0 -> 1.18.0")
    assert verdict(checks.STALL_SECONDS + 1, moved)[0] == "converging"  # it moved: its claim covers again


def test_a_change_that_outlasts_wait_is_degraded_and_named(planned: Any, server: StatsServer) -> None:
    outputs = _outputs(planned, server)
    server.set(Answer.stats(**{**REAL, "active_nodes": 8000, "total_nodes": 9500}))
    server.guest_attributes = {"swarm-3": {"target-agents": "1500", "agents-running": "0",
                                           "rollout": "rolling 0/1500: version 1.17.0 -> 1.18.0"},
                               "swarm-1": {"target-agents": "3000", "agents-running": "3000"},
                               "swarm-2": {"target-agents": "5000", "agents-running": "5000"}}
    server.metadata = {"swarm-3": {"pilot-version": "1.18.0"}}
    env = {"PILOT_FLEET_COMPUTE_API": f"{server.base}/compute/v1", "PILOT_FLEET_ACCESS_TOKEN": "test-token"}
    once = verify("--outputs", "-", stdin=json.dumps(outputs), env=env)
    assert once.returncode == 3 and once.stdout.startswith("CONVERGING:"), once.stdout  # one check: come back later
    waited = verify("--outputs", "-", "--wait", "2", "--interval", "1", stdin=json.dumps(outputs), env=env)
    assert waited.returncode == 1 and "still mid-change when --wait (2 s) ran out: swarm-3" in waited.stdout, \
        waited.stdout
