"""The project-level script run by Compute Engine's own runner, as on a VM.

`google_metadata_script_runner startup` (Debian's google-guest-agent, unpacked by scripts/dev.sh) runs in a network
namespace whose 169.254.169.254 serves the dev stack's planned metadata: the project's `startup-script` item and
swarm-dev-1's instance attributes (its agent target lowered to 12 so the test is short). The script uses its
default metadata address; only the file paths (PILOT_ROOT), system commands (stubs on PATH) and the daemon (the
stand-in) are sandboxed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.vm_contract import MetadataKey
from testbed.boot_sandbox import REPO, BootSandbox, MetadataServer

RUNNER = REPO / ".cache/google-guest-agent/usr/bin/google_metadata_script_runner"
METADATA_IP = "169.254.169.254"
TARGET = 12

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="network namespaces need root and iproute2")


def _planned_metadata(plan: dict[str, Any]) -> tuple[str, dict[str, str]]:
    by_name = {r["name"]: r for r in plan["resources"] if r["custom"]}
    script = by_name["startup-script"]["inputs"]["value"]
    attributes = dict(by_name["swarm-dev-1"]["inputs"]["metadata"])
    return script, attributes


class Host:
    def __init__(self, box: BootSandbox, namespace: str) -> None:
        self.box, self.namespace = box, namespace

    def runner(self, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.namespace, str(RUNNER), "startup"],
                                env=self.box.env(**extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    def boot(self) -> str:
        proc = self.runner()
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out
        return out


@pytest.fixture
def host(short_run_dir: str, planned: Callable[[str], dict[str, Any]]) -> Iterator[Host]:
    if not RUNNER.exists():
        pytest.fail(f"{RUNNER} is missing: run `bash scripts/dev.sh test`, which unpacks google-guest-agent")
    script, attributes = _planned_metadata(planned("dev"))
    attributes["pilot-target-agents"] = str(TARGET)
    # one registration address: this sandbox has no alias IP range (the whole-fleet test boots the dev stack's two)
    attributes[MetadataKey.REGISTRATION_ADDRESSES] = "1"
    # plaintext: the registry here is a port that accepts connections, not a TLS server (the whole-fleet test pins
    # the real rendezvous' certificate)
    del attributes[MetadataKey.REGISTRY_FINGERPRINT]
    # a short base: the agents' sockets live under it (PILOT_ROOT/run/pilot-fleet/agents/N.sock) and must fit
    # sun_path, which pytest's numbered temporary paths can exceed
    tmp_path = Path(short_run_dir)
    box = BootSandbox(tmp_path, MetadataServer(attributes, base_url=f"http://{METADATA_IP}"))
    box.prepare()
    # the agent state disk the plan attaches (its mount and format are recorded by the sandbox's stubs)
    device = box.root / f"dev/disk/by-id/google-{attributes['pilot-state-device']}"
    device.parent.mkdir(parents=True)
    device.touch()
    namespace = f"pilot-fleet-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    server = None
    try:
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", namespace, "addr", "add", f"{METADATA_IP}/32", "dev", "lo"], check=True)
        # the planned registry address answers on this host's loopback: the supervisor starts agents only then
        registry_host = attributes["pilot-registry"].rpartition(":")[0]
        subprocess.run(["ip", "-n", namespace, "addr", "add", f"{registry_host}/32", "dev", "lo"], check=True)
        spec = tmp_path / "metadata.json"
        spec.write_text(json.dumps({"attributes": attributes, "project": {"startup-script": script},
                                    "instance": {"name": "swarm-dev-1"},
                                    "files": {k: str(v) for k, v in box.metadata.files.items()},
                                    "host": METADATA_IP, "port": 80, "listen": [attributes["pilot-registry"]]}))
        server = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-m", "testbed.boot_sandbox",
                                   str(spec)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline().strip() == "serving"
        yield Host(box, namespace)
    finally:
        box.shutdown()
        if server:
            server.kill()
            server.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", namespace], check=False)


def _wait(what: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_the_runner_runs_the_project_script_and_the_host_reaches_its_target(host: Host) -> None:
    out = host.boot()
    assert "Found startup-script in metadata." in out
    assert "startup-script: pilot-fleet startup: boot path done for role swarm" in out
    # the agents' state disk: formatted on first use, mounted where their identities live, before any agent started
    state = host.box.root / "var/lib/pilot-fleet"
    calls = host.box.calls()
    assert f"mkfs.ext4 -q -L pilot-agents-sta {host.box.root}/dev/disk/by-id/google-pilot-agents-state" in calls
    mount = calls.index(f"mount -o discard,defaults {host.box.root}/dev/disk/by-id/google-pilot-agents-state {state}")
    assert mount < calls.index("systemctl start pilot-agents.service")
    unit = (host.box.root / "etc/systemd/system/pilot-agents.service").read_text()
    assert f"ConditionPathIsMountPoint={state}\n" in unit
    # the dev stack's pacing as planned: rounds of 10, 3 s apart, 10 fresh identities, then one per 6 s
    _wait(lambda: len(host.box.agent_starts()) == TARGET and host.box.supervisor_status().get("running") == TARGET)
    again = host.boot()
    assert "already ran this boot" in again
    time.sleep(1.0)
    assert len(host.box.agent_starts()) == TARGET


def test_concurrent_runs_after_a_reboot_add_nothing(host: Host) -> None:
    host.boot()
    _wait(lambda: all((host.box.root / f"var/lib/pilot-fleet/agents/{i}/registered").exists()
                      for i in range(TARGET)))
    assert host.box.systemctl("stop", "pilot-agents.service") == 0
    host.box.boot_id = "boot-2"
    runs = [host.runner() for _ in range(3)]
    outputs = [run.communicate(timeout=180)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    assert sum("boot path done for role swarm" in out for out in outputs) == 1
    assert sum("already ran this boot" in out for out in outputs) == 2
    _wait(lambda: len(host.box.agent_starts()) == 2 * TARGET)
    time.sleep(1.0)
    starts = host.box.agent_starts()
    assert len(starts) == 2 * TARGET and all(" known " in line for line in starts[TARGET:])
    assert host.box.supervisor_status()["running"] == TARGET
