"""The project is installable: a wheel built from pyproject.toml carries every package of fleet/, the fact tables and
the files that run on the VMs, and the installed package (away from this checkout) renders the same startup script
and the same policy-pack facts as the checkout does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from fleet.generators.policy_facts import FACTS_PATH
from fleet.startup_render import render_startup_script

REPO = Path(__file__).resolve().parent.parent
# what the wheel is built from; anything else in the checkout (tests, stacks, the pack) stays out of it
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "requirements.txt", "fleet", "startup")


def _wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    # the build backend (setuptools) is in the dev requirements: no index is needed here
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(tmp_path / "dist"), str(src)], capture_output=True, text=True,
                           check=False)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("pilot_fleet-*.whl")
    return wheel


def test_the_wheel_installs_the_fleet_and_renders_what_the_checkout_renders(tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(_wheel(tmp_path)) as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        wheel.extractall(site)
    packages = {str(p.parent.relative_to(REPO)) for p in (REPO / "fleet").rglob("__init__.py")}
    assert {f"{p}/__init__.py" for p in packages} <= names, "a package of fleet/ is missing from pyproject.toml"
    tables = {f"fleet/facts/data/{p.name}" for p in (REPO / "fleet" / "facts" / "data").glob("*.yaml")}
    assert tables and tables <= names
    assert {"fleet/startup_files/common.sh", "fleet/startup_files/swarm.sh", "fleet/startup_files/rendezvous.sh",
            "fleet/startup_files/main.sh", "fleet/startup_files/pilot_supervisor/supervisor.py"} <= names
    assert not {n for n in names if n.startswith(("tests/", "policies/", "bench/"))}
    assert "pilot-fleet = fleet.cli:main" in entry_points

    elsewhere = tmp_path / "elsewhere"  # not the checkout: only the unpacked wheel provides `fleet`
    elsewhere.mkdir()
    probe = ("import json, fleet\n"
             "from fleet.startup_render import render_startup_script\n"
             "from fleet.generators.policy_facts import render_facts\n"
             "print(json.dumps({'at': fleet.__file__, 'script': render_startup_script(), 'facts': render_facts()}))")
    run = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, capture_output=True, text=True, check=False,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)})
    assert run.returncode == 0, run.stderr
    installed = json.loads(run.stdout)
    assert Path(installed["at"]).is_relative_to(site)
    assert installed["script"] == render_startup_script()
    assert installed["facts"] == FACTS_PATH.read_text()  # the pack's facts, regenerated from the installed package
