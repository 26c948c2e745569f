"""The planner's Spot prices and cost frontier (#32): the Spot rates reproduce the per-machine-type figures of their
cited source, `fleet capacity` shows the frontier and the seed's VMs on Spot, README's figures are the planner's, a
spot stack is priced by its provisioning, and `--write-stack --spot` writes a mix the program plans."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from fleet.capacity.frontier import frontier
from fleet.capacity.sizing import Assumptions, vm_monthly
from fleet.facts import pilot
from fleet.facts.machine_types import lookup
from fleet.facts.prices import price_table
from tests.conftest import REPO, run_fleet

# The source's us-central1 $/h, on-demand and Spot, per machine type (fleet/facts/data/prices.yaml's comment)
SOURCE = {"e2-standard-16": (0.53609136, 0.321696), "e2-highmem-16": (0.72319728, 0.433952),
          "n2-standard-8": (0.388472, 0.222944), "n2-highmem-8": (0.524056, 0.300768),
          "n2-highmem-80": (5.24056, 3.00768), "n2d-highcpu-32": (0.998016, 0.349792),
          "n2d-standard-96": (4.055616, 1.421184), "n2d-standard-80": (3.37968, 1.18432),
          "t2d-standard-32": (1.351872, 0.671232)}


@pytest.mark.parametrize("machine", list(SOURCE))
def test_the_tables_rates_reproduce_the_sources_prices_per_machine_type(machine: str) -> None:
    table, spec = price_table(), lookup(machine)
    assert spec is not None
    on_demand, spot = SOURCE[machine]
    assert table.hourly(spec, "us-central1") == pytest.approx(on_demand, abs=1e-4)
    assert table.hourly(spec, "us-central1", spot=True) == pytest.approx(spot, abs=1e-4)
    assert table.spot_date == "2026-08-20"


def test_the_frontier_orders_cost_against_what_stays_up() -> None:
    a = Assumptions()
    on_demand, spot, mix = frontier(9500, a)
    assert on_demand.fleet.per_thousand > mix.fleet.per_thousand > spot.fleet.per_thousand
    assert on_demand.preemption is None and spot.floor_agents == 0
    assert mix.floor_agents >= 9500 / 3 and mix.fleet.agents >= 9500
    for option in (spot, mix):  # every VM within the failure-domain share of the whole fleet
        assert all(line.target_agents <= 9500 * a.max_share for line in option.fleet.lines)
        assert option.preemption is not None and option.preemption.stop_seconds == 20
        busiest = max(line.target_agents for line in option.fleet.lines if line.spot)
        assert option.preemption.agents_offline == busiest
        assert option.preemption.restart_seconds == -(-busiest // 10) * 3.0  # the supervisor's default rounds
    assert [o.name for o in frontier(9500, a, 0)] == ["all on-demand", "all Spot"]


def figures(stdout: str) -> dict[str, str]:
    """$ per 1,000 agents a month, by what the planner printed them for."""
    found = {}
    for line in stdout.splitlines():
        match = re.search(r"\$\s*([0-9,.]+) per 1,000 agents", line)
        if match:
            found[line.split(":")[0].split("$")[0].strip()] = match[1]
    return found


def test_capacity_shows_the_frontier_and_the_seed_on_spot_and_readme_quotes_them() -> None:
    result = run_fleet("capacity", "--agents", "9500", "--compare-stack", "prod")
    assert result.returncode == 0, result.stderr
    out = figures(result.stdout)
    assert "cost frontier for 9,500 agents (Spot rates of 2026-08-20" in result.stdout
    assert "one preemption: 792 agents offline, stopped within 20 s" in result.stdout
    got = {"seed": out["stack prod"], "seed on Spot": out["stack prod on Spot"], "on-demand": out["all on-demand"],
           "all Spot": out["all Spot"], "floor": out["on-demand floor of 33% + Spot"]}
    readme = (REPO / "README.md").read_text()
    quoted = re.search(r"\*\*\$([0-9.]+)\*\* per 1,000 agents a month on-demand and\s+\*\*\$([0-9.]+)\*\* with the "
                       r"same VMs on Spot; recommended, \*\*\$([0-9.]+)\*\* on-demand, \*\*\$([0-9.]+)\*\* all on "
                       r"Spot, \*\*\$([0-9.]+)\*\* with a\s+third", readme)
    assert quoted, "README's Spot figures are not where this test reads them"
    assert list(quoted.groups()) == [got[k] for k in ("seed", "seed on Spot", "on-demand", "all Spot", "floor")]


def test_a_spot_stack_is_priced_by_its_provisioning() -> None:
    """Pulumi.spot.yaml: its on-demand pool at on-demand rates, its spot pool at Spot rates (with their disks)."""
    result = run_fleet("capacity", "--stack", "spot")
    assert result.returncode == 0, result.stderr
    machine = lookup("e2-highmem-4")
    assert machine is not None
    for spot, label in ((False, "e2-highmem-4"), (True, "e2-highmem-4 (spot)")):
        monthly = vm_monthly(machine, pilot.DEFAULT_BOOT_DISK_GB + pilot.DEFAULT_STATE_DISK_GB, "us-central1",
                             price_table(), spot)
        assert monthly is not None
        assert re.search(rf"^  {re.escape(label)}\s+6\s.*\s{6 * monthly:,.0f}$", result.stdout, re.M), result.stdout


@pytest.mark.plan
def test_write_stack_spot_writes_a_mix_the_program_plans(tmp_path: Path) -> None:
    for name in ("Pulumi.yaml", "__main__.py"):
        (tmp_path / name).symlink_to(REPO / name)
    result = run_fleet("capacity", "--agents", "9500", "--spot", "--write-stack", "mix", "--program", str(tmp_path))
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "Pulumi.mix.yaml").read_text()
    assert text.startswith("# Written by `python -m fleet capacity --agents 9500 --spot-floor 0.333333 --spot")
    pools = yaml.safe_load(text)["config"]["pilot-fleet:swarmPools"]
    floor = [p for p in pools if p.get("provisioning") != "spot"]
    spot = [p for p in pools if p.get("provisioning") == "spot"]
    assert floor and spot and sum(p["size"] * p["targetAgents"] for p in floor) >= 9500 / 3
    out = tmp_path / "plan.json"
    planned = run_fleet("plan", "--program", str(tmp_path), "--stack", "mix", "--json", str(out))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    policy = json.loads(out.read_text())["policy"]
    assert not [v for v in policy["violations"] if policy["policies"][v["policy"]] == "mandatory"]


@pytest.mark.parametrize(("args", "message"), [
    (["--agents", "100", "--spot"], "--spot says what --write-stack writes"),
    (["--agents", "100", "--spot-floor", "1"], "argument --spot-floor: '1' must be a share in [0, 1)"),
])
def test_spot_options_refuse_what_they_cannot_do(args: list[str], message: str) -> None:
    result = run_fleet("capacity", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
