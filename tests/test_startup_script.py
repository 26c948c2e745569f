"""The startup script as shipped: lint-clean, within its budget of half a metadata value, and made of tracked files."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fleet import vm_contract
from fleet.facts import pilot
from fleet.facts.pilot_releases import releases
from fleet.startup_render import (
    METADATA_VALUE_LIMIT,
    SCRIPT_BUDGET,
    SCRIPT_PARTS,
    STARTUP_DIR,
    SUPERVISOR_MODULES,
    SUPERVISOR_PACKAGE,
    build_zipapp,
    render_contract,
    render_startup_script,
    without_comments,
)
from fleet.vm_contract import MetadataKey
from testbed.boot_sandbox import BootSandbox, MetadataServer, free_tcp_port
from testbed.supervisor_harness import SUPERVISOR, free_udp_ports, registry_port, sv

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
    assert len(body.encode()) <= SCRIPT_BUDGET == METADATA_VALUE_LIMIT // 2 == 131072
    assert body.startswith("#!/bin/bash\n") and "set -euo pipefail" in body
    assert render_contract() in body  # the contract travels inside the one metadata value, as JSON
    rendered = tmp_path / "startup-script"
    rendered.write_text(body)
    subprocess.run(["bash", "-n", str(rendered)], check=True)
    result = subprocess.run(["shellcheck", "--severity=style", str(rendered)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout


def test_the_script_is_its_parts_in_order_with_the_prologue_first() -> None:
    body = render_startup_script()
    common = (STARTUP_DIR / SCRIPT_PARTS[0]).read_text()
    # the header (what the script does and why) as it is in common.sh, then the prologue's code and markers
    assert body.startswith(common.split("set -euo pipefail\n")[0] + "set -euo pipefail\n")
    assert body.startswith(without_comments(common, keep_header=True).split("# @prologue end")[0])

    def first_code_line(part: str) -> str:
        return next(line for line in (STARTUP_DIR / part).read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#"))

    at = [body.index(first_code_line(part)) for part in SCRIPT_PARTS[1:]]
    assert at == sorted(at) and body.rstrip().endswith('main "$@"')


def test_the_script_drops_the_parts_comments_but_not_heredoc_content_or_markers() -> None:
    """The parts' comments stay in startup/ (the budget); what a heredoc writes is content and stays whole."""
    body = render_startup_script()
    assert "# Write a file atomically" in (STARTUP_DIR / "common.sh").read_text()
    assert "# Write a file atomically" not in body
    assert body.count("# @prologue") == 2 and "# shellcheck disable=SC2034" in body
    for part in SCRIPT_PARTS:
        text = (STARTUP_DIR / part).read_text()
        for heredoc in re.findall(r"cat <<EOF2\n(.*?)\nEOF2\n", text, re.S):
            assert heredoc in body, heredoc[:80]


def test_the_zipapp_and_contract_unpacked_from_the_script_are_the_renderers(tmp_path: Path) -> None:
    """Running the rendered script's heredocs gives back the zipapp and the contract byte for byte, and the zipapp
    holds every module of startup/pilot_supervisor/ unchanged."""
    rendered = tmp_path / "startup-script"
    for function, expected in (("supervisor_zipapp", build_zipapp()), ("vm_contract", render_contract().encode())):
        rendered.write_text(render_startup_script().replace('main "$@"\n', f"{function}\n"))
        env = {"PATH": "/usr/bin:/bin", "PILOT_ROOT": str(tmp_path), "PILOT_BOOT_ID_FILE": str(rendered)}
        out = subprocess.run(["bash", str(rendered)], capture_output=True, check=True, env=env).stdout
        assert out == expected, function
    with zipfile.ZipFile(io.BytesIO(build_zipapp())) as archive:
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in archive.infolist())
        for name in SUPERVISOR_MODULES:
            assert archive.read(f"pilot_supervisor/{name}") == (SUPERVISOR_PACKAGE / name).read_bytes()
    assert build_zipapp() == build_zipapp()  # the same bytes every time: plans diff cleanly


def test_the_zipapp_packs_exactly_the_tracked_modules(tmp_path: Path) -> None:
    """What runs as root on every VM is the list of tracked modules: an untracked scratch file beside them changes
    nothing, a listed module that is missing is an error naming it, and the list is what git tracks."""
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=SUPERVISOR_PACKAGE, capture_output=True, text=True,
                             check=True).stdout.split()
    assert sorted(tracked) == sorted(SUPERVISOR_MODULES)
    copy = tmp_path / "pilot_supervisor"
    shutil.copytree(SUPERVISOR_PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "scratch.py").write_text("import os\nos.system('echo would run as root')\n")
    assert build_zipapp(copy) == build_zipapp()
    (copy / "upgrade.py").unlink()
    with pytest.raises(ValueError, match=r"the supervisor modules upgrade\.py are not there"):
        build_zipapp(copy)


def test_a_script_over_its_budget_fails_the_render_naming_both_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    from fleet import startup_render

    size = len(render_startup_script().encode())
    monkeypatch.setattr(startup_render, "SCRIPT_BUDGET", size - 1)
    with pytest.raises(ValueError, match=rf"is {size} bytes: over its budget of {size - 1} bytes, half of Compute "
                                         rf"Engine's {METADATA_VALUE_LIMIT}-byte limit"):
        startup_render.render_startup_script()


def test_rendering_refuses_parts_without_their_markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fleet import startup_render

    broken = tmp_path / "startup"
    shutil.copytree(STARTUP_DIR, broken)
    (broken / "common.sh").write_text((broken / "common.sh").read_text().replace("# @supervisor-zipapp", ""))
    monkeypatch.setattr(startup_render, "STARTUP_DIR", broken)
    with pytest.raises(ValueError, match="must appear once"):
        startup_render.render_startup_script()


def _keys_read() -> set[str]:
    """pilot-* keys the boot path and the supervisor read: every attribute of both roles in the VM contract, the old
    names of renamed keys, and the keys a rendezvous refuses."""
    rules = json.loads(render_contract())
    keys = {rule["key"] for role in ("swarm", "rendezvous") for rule in rules[role].values()}
    return keys | set(rules["renamed"].values()) | set(rules["rendezvous_forbidden"]) | {MetadataKey.ROLE}


def test_the_vm_code_holds_no_copy_of_a_metadata_key() -> None:
    """Keys reach the VM only through the contract: no `pilot-*` key is written out in startup/ (the prologue's run
    directory and the unit names are no keys)."""
    keys = {v for k, v in vars(MetadataKey).items() if k.isupper() and v.startswith("pilot-")}
    keys |= set(vm_contract.RENAMED.values())
    for path in [*STARTUP_DIR.glob("*.sh"), *(STARTUP_DIR / "pilot_supervisor").glob("*.py")]:
        text = path.read_text()
        assert not [k for k in keys if k in text], path


def test_script_reads_only_the_fleets_metadata_keys() -> None:
    known = {v for k, v in vars(MetadataKey).items() if k.isupper()} | set(vm_contract.RENAMED.values())
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
    sys.path.insert(0, str(REPO / "policies"))
    from fleet_policies.gce import script_keys

    sample = ["startup-script", "startup-script-url", "user-data", "user-data-encoding", "shutdown-script",
              "shutdown-script-url", "sysprep-specialize-script-ps1", "windows-startup-script-cmd", "pilot-role",
              "enable-oslogin", "startup-scripts-note", "windows-keys"]
    assert sv.attributes.script_keys(sample) == script_keys(dict.fromkeys(sample)) == [
        "shutdown-script", "shutdown-script-url", "startup-script", "startup-script-url",
        "sysprep-specialize-script-ps1", "user-data", "user-data-encoding", "windows-startup-script-cmd"]


def test_kernel_figures_on_the_vm_are_the_planners() -> None:
    """What the boot path writes to sysctl.d (the zipapp's `sysctl`) carries the PID and file ceilings the capacity
    planner sizes VMs by."""
    out = subprocess.run([sys.executable, str(SUPERVISOR), "sysctl", "--reserved-ports", "10000-10099"],
                         capture_output=True, text=True, check=True).stdout
    assert f"kernel.pid_max = {pilot.KERNEL_PID_MAX}\n" in out and f"fs.file-max = {pilot.KERNEL_FILE_MAX}\n" in out
    assert "net.ipv4.ip_local_reserved_ports = 10000-10099\n" in out


def changed_bounds() -> dict[str, vm_contract.Attribute]:
    """The shipped table with the spawn ceiling raised to 30 and GOGC's default moved to 77."""
    bounds = dict(vm_contract.SWARM_ATTRIBUTES)
    bounds["spawn_parallelism"] = dataclasses.replace(bounds["spawn_parallelism"], high=30)
    bounds["gogc"] = dataclasses.replace(bounds["gogc"], default=77)
    return bounds


CHANGED_FACTS = """
from fleet import vm_contract
from tests.test_startup_script import changed_bounds
vm_contract.SWARM_ATTRIBUTES = changed_bounds()
"""


def test_a_changed_fact_reaches_config_script_and_supervisor(short_run_dir: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """fleet/vm_contract.py's SWARM_ATTRIBUTES is the one table: change a bound and a default there, and config
    validation, the rendered script and the supervisor config it writes all follow (no copy of them anywhere else)."""
    # config validation, in a fresh interpreter that changes the table before fleet.config.model builds its models
    check = CHANGED_FACTS + """
import json, sys
from fleet.config.checks import parse_fleet_config
from fleet.config.model import FleetConfigError
from fleet.config.pulumi_source import parse_flat_config
from fleet.plan.stack_files import wire_value
from fleet.vm_contract import MetadataKey
from tests.conftest import load_stack_config
stack = load_stack_config("prod")
stack.pop("pilot-fleet:coldStartMinutes")  # no budget: the bound alone decides
for host in stack["pilot-fleet:swarmHosts"]:
    host["spawnParallelism"] = 10
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
    assert refused == [
        "pilot-fleet:swarmHosts[1].spawnParallelism (swarm-2): Input should be less than or equal to 30"]
    # the rendered script and the supervisor config it writes: 25 accepted, gogc unset takes the new default
    monkeypatch.setattr(vm_contract, "SWARM_ATTRIBUTES", changed_bounds())
    attributes = {"pilot-role": "swarm", "pilot-version": pilot.PILOT_VERSION, "pilot-target-agents": "2",
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
