"""The startup script as shipped: lint-clean and small enough to be one metadata value."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.components.startup_script import (
    METADATA_VALUE_LIMIT,
    SCRIPT_PATH,
    SUPERVISOR_PATH,
    render_startup_script,
    render_supervisor,
)
from fleet.facts import pilot
from fleet.facts.pilot_releases import releases
from tests.boot_sandbox import BootSandbox, MetadataServer, free_tcp_port
from tests.supervisor_harness import free_udp_ports, registry_port

REPO = Path(__file__).resolve().parent.parent
SHELL_SCRIPTS = sorted([*REPO.glob("startup/*.sh"), REPO / "scripts" / "dev.sh", REPO / ".ci" / "run"])


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck_and_bash_n(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    result = subprocess.run(["shellcheck", "--severity=style", str(script)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout


def test_rendered_script_fits_metadata_and_passes_shellcheck(tmp_path: Path) -> None:
    body = render_startup_script()
    assert len(body.encode()) < METADATA_VALUE_LIMIT
    assert body.startswith("#!/bin/bash\n") and "set -euo pipefail" in body
    assert render_supervisor() in body  # the supervisor travels inside the one metadata value
    rendered = tmp_path / "startup-script"
    rendered.write_text(body)
    subprocess.run(["bash", "-n", str(rendered)], check=True)
    result = subprocess.run(["shellcheck", "--severity=style", str(rendered)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout


def test_the_supervisor_unpacked_from_the_script_is_the_file(tmp_path: Path) -> None:
    """Running the rendered script's heredoc gives back the rendered supervisor byte for byte: the source file with
    only its attribute rules filled in."""
    rendered = tmp_path / "startup-script"
    rendered.write_text(render_startup_script().replace('main "$@"\n', "supervisor_program\n"))
    out = subprocess.run(["bash", str(rendered)], capture_output=True, text=True, check=True).stdout
    assert out == render_supervisor()
    source, rendered = SUPERVISOR_PATH.read_text().splitlines(), out.splitlines()
    assert len(source) == len(rendered)
    assert [a for a, b in zip(source, rendered, strict=True) if a != b] == [
        "ATTRIBUTE_RULES: dict[str, Any] = {}  # @attribute-rules"]


def test_rendering_refuses_a_script_without_its_markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fleet.components import startup_script

    broken = tmp_path / "startup.sh"
    broken.write_text(SCRIPT_PATH.read_text().replace("# @pilot-supervisor", ""))
    monkeypatch.setattr(startup_script, "SCRIPT_PATH", broken)
    with pytest.raises(ValueError, match="must each appear once"):
        startup_script.render_startup_script()


def _keys_read() -> set[str]:
    """pilot-* keys the boot path reads: by name in startup.sh, and through the supervisor's key() and bounds (the
    swarm attributes, which the supervisor checks at boot and on every live change)."""
    import re

    from fleet.components.startup_script import attribute_rules

    rules = attribute_rules()
    script = set(re.findall(r"attribute (pilot-[a-z0-9-]+)", SCRIPT_PATH.read_text()))
    by_name = {rules["keys"][name] for name in re.findall(r'key\("([A-Z_]+)"\)', SUPERVISOR_PATH.read_text())}
    bounded = {row[0] for row in rules["bounds"].values()}
    return script | by_name | bounded


def test_script_reads_only_the_fleets_metadata_keys() -> None:
    known = {v for k, v in vars(pilot.MetadataKey).items() if k.isupper()}
    read = _keys_read()
    assert read and read <= known, read - known


def test_every_pilot_key_the_stack_sets_is_read_by_the_script(planned) -> None:
    read = _keys_read()
    for stack in ("prod", "dev"):
        for resource in planned(stack)["resources"]:
            metadata = resource["inputs"].get("metadata") or {}
            unread = {k for k in metadata if k.startswith("pilot-")} - read
            assert not unread, f"{stack} {resource['name']} sets {unread}, which the boot path never reads"


def test_script_and_policy_agree_on_script_keys() -> None:
    import re
    import sys

    sys.path.insert(0, str(REPO / "policies"))
    from fleet_policies.gce import script_keys

    pattern = re.search(r"SCRIPT_KEYS_RE='([^']+)'", SCRIPT_PATH.read_text()).group(1)
    sample = ["startup-script", "startup-script-url", "user-data", "user-data-encoding", "shutdown-script",
              "shutdown-script-url", "sysprep-specialize-script-ps1", "windows-startup-script-cmd", "pilot-role",
              "enable-oslogin", "startup-scripts-note", "windows-keys"]
    assert sorted(k for k in sample if re.match(pattern, k)) == script_keys(dict.fromkeys(sample))


def test_kernel_figures_in_the_script_are_the_planners() -> None:
    from fleet.facts import pilot

    text = SCRIPT_PATH.read_text()
    assert f"kernel.pid_max = {pilot.KERNEL_PID_MAX}\n" in text
    assert f"fs.file-max = {pilot.KERNEL_FILE_MAX}\n" in text



def changed_bounds() -> dict[str, pilot.AttributeBounds]:
    """The shipped table with the spawn ceiling raised to 30 and GOGC's default moved to 77."""
    bounds = dict(pilot.AGENT_BOUNDS)
    bounds["spawn_parallelism"] = dataclasses.replace(bounds["spawn_parallelism"], high=30)
    bounds["gogc"] = dataclasses.replace(bounds["gogc"], default=77)
    return bounds


CHANGED_FACTS = """
from fleet.facts import pilot
from tests.test_startup_script import changed_bounds
pilot.AGENT_BOUNDS = changed_bounds()
"""


def test_a_changed_fact_reaches_config_script_and_supervisor(short_run_dir: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """fleet/facts/pilot.py's AGENT_BOUNDS is the one table: change a bound and a default there, and config validation,
    the rendered script and the supervisor config it writes all follow (no copy of them anywhere else)."""
    # config validation, in a fresh interpreter that changes the table before fleet.config.model builds its models
    check = CHANGED_FACTS + """
import json, sys
from fleet.config.model import FleetConfigError, parse_fleet_config
from fleet.config.pulumi_source import parse_flat_config
from fleet.plan.stack_files import wire_value
from tests.conftest import load_stack_config
stack = load_stack_config("prod")
results = []
for parallelism in (25, 31):
    stack["pilot-fleet:swarmHosts"][1]["spawnParallelism"] = parallelism
    try:
        cfg = parse_flat_config({k: wire_value(v) for k, v in stack.items()})
        results.append([cfg.swarm_hosts[1].spawn_parallelism, cfg.swarm_hosts[0].gogc])
    except FleetConfigError as exc:
        results.append(exc.problems)
print(json.dumps(results))
"""
    out = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True)
    accepted, refused = json.loads(out.stdout)
    assert accepted == [25, 77]
    assert refused == ["pilot-fleet:swarmHosts[1].spawnParallelism: Input should be less than or equal to 30"]
    # the rendered script and the supervisor config it writes: 25 accepted, gogc unset takes the new default
    monkeypatch.setattr(pilot, "AGENT_BOUNDS", changed_bounds())
    attributes = {"pilot-role": "swarm", "pilot-version": pilot.PILOT_VERSION, "pilot-agent-target": "2",
                  "pilot-daemon-release": releases()[pilot.PILOT_VERSION].attribute(),
                  "pilot-base-udp-port": str(free_udp_ports(4)), "pilot-beacon": "127.0.0.1:9",
                  "pilot-spawn-parallelism": "25", "pilot-health-port": str(free_tcp_port())}
    with registry_port() as registry, MetadataServer({**attributes, "pilot-registry": registry}).serving() as md:
        box = BootSandbox(Path(short_run_dir), md)  # short: the agents' sockets must fit sun_path
        box.prepare()
        try:
            result = box.run()
            assert result.returncode == 0, result.stderr
            written = json.loads((box.root / "etc/pilot-fleet/supervisor.json").read_text())
            assert written["spawn_parallelism"] == 25 and written["gogc"] == 77
        finally:
            box.shutdown()
