"""Benchmark: offline plan time of the dev, prod and 50,000-agent (scale) stacks, and the capacity planner.

Run: .venv/bin/python bench/plan_scaling.py   (figures are ratios measured in this one run; absolute seconds
depend on the machine). Each stack is planned in-process under the mock engine, after one warm-up plan so that
imports are not counted, best of 5.

The three shipped stacks differ in kind (the scale stack's templates and groups are heavier resources than
instances), so the linearity claim is checked on a series of one kind: the prod stack with 3, 12, 48 and 96
swarm hosts. Plan time must grow no faster than linearly in the number of resources: the time per resource at
the largest size may not exceed the smallest size's by more than 15% (noise). The planner must answer for
50,000 and 500,000 agents in well under a second.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fleet.capacity.sizing import Assumptions, recommend  # noqa: E402
from fleet.plan.mock_engine import plan_program  # noqa: E402
from fleet.plan.stack_files import load_project  # noqa: E402

STACKS = ("dev", "prod", "scale")
ROUNDS = 5


def plan_seconds(stack: str, directory: Path = REPO) -> tuple[float, int]:
    project = load_project(directory, stack)
    best, count = float("inf"), 0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        plan = plan_program(project, stack, str(project.config.get("gcp:project", "mock")))
        best = min(best, time.perf_counter() - start)
        count = sum(1 for r in plan.resources if r.custom)
    return best, count


def series_stack(directory: Path, hosts: int) -> str:
    """A copy of the program (links) with a stack of `hosts` prod-like swarm hosts."""
    import yaml

    name = f"series{hosts}"
    for entry in ("Pulumi.yaml", "__main__.py", "fleet", "startup"):
        if not (directory / entry).exists():
            (directory / entry).symlink_to(REPO / entry)
    config = yaml.safe_load((REPO / "Pulumi.prod.yaml").read_text())["config"]
    config["pilot-fleet:swarmHosts"] = [
        {"name": f"swarm-{i}", "machineType": "e2-standard-16", "targetAgents": 1000} for i in range(hosts)]
    (directory / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))
    return name


def planner_seconds(agents: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        recommend(agents, Assumptions())
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    import tempfile

    plan_seconds("dev")  # warm-up: imports and first-use caches
    rows = {stack: plan_seconds(stack) for stack in STACKS}
    dev_time, dev_count = rows["dev"]
    print(f"{'stack':<9} {'resources':>9} {'plan s':>8} {'time ratio':>10} {'resource ratio':>14}")
    for stack, (seconds, count) in rows.items():
        print(f"{stack:<9} {count:>9} {seconds:>8.3f} {seconds / dev_time:>10.2f} {count / dev_count:>14.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        series = [(hosts, *plan_seconds(series_stack(Path(tmp), hosts), Path(tmp))) for hosts in (3, 12, 48, 96)]
    _, first_s, first_n = series[0]
    print(f"\n{'hosts':<9} {'resources':>9} {'plan s':>8} {'time ratio':>10} {'resource ratio':>14} "
          f"{'ms/resource':>11}")
    for hosts, seconds, count in series:
        print(f"{hosts:<9} {count:>9} {seconds:>8.3f} {seconds / first_s:>10.2f} {count / first_n:>14.2f} "
              f"{seconds / count * 1000:>11.2f}")
    _, last_s, last_n = series[-1]
    linear = (last_s / last_n) <= 1.15 * (first_s / first_n)
    print(f"plan time grows no faster than linearly in resources: {'yes' if linear else 'NO'}\n")
    for agents in (50_000, 500_000):
        print(f"capacity planner, {agents:,} agents: {planner_seconds(agents) * 1000:.1f} ms")
    return 0 if linear else 1


if __name__ == "__main__":
    sys.exit(main())
