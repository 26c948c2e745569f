"""Benchmark: what least privilege costs at 1,000 agents: agents as their own user in their own cgroup, under the
units' systemd sandbox, against the previous release's shape (agents as root, no sandbox), under real systemd.

Run as root: .venv/bin/python bench/agent_sandbox.py [--agents 1000]   (needs gcc and what `bash scripts/dev.sh test`
sets up: the VM image in .cache/vm). One Debian 12 system container of the test bed's image (testbed/vm_fleet.py)
runs the supervisor zipapp twice as a transient systemd service, each time from nothing to the target and then 30 s
at steady state:

- `sandboxed`: the `pilot-agents.service` shape of this release: `Delegate=yes`, the capability bounding set and
  every directive of `unit_sandbox` (both read from startup/swarm.sh and startup/common.sh, so the bench follows
  the product), agents dropped to `pilot-agent`;
- `plain`: the same supervisor and config with none of that, agents as root (the previous release).

Agents are bench/standin_daemon.c (the real pilot-daemon takes 13 MB each and needs a registry that admits 1,000
fresh identities at once; the stand-in binds its UDP port and IPC socket as the daemon does once registered). So
this measures the supervisor's side of the sandbox (a uid change and a cgroup move per start, the seccomp filter
on every system call of the supervisor and the agents) and the unit's fixed costs, not the real daemon's system
call rate under the filter. The registry is a TCP port that accepts (the supervisor probes it). Pacing: rounds of
50, 0.2 s apart, so the floor is ceil(N / 50) x 0.2 s.

Reported per shape, in one run: time to target (every agent's socket open) against the floor; at steady state over
30 s, CPU of the supervisor and of all agents (share of one core), and resident memory of the supervisor and of
all agents. Exit 1 when the sandboxed shape takes more than 1.1x the plain one's time to target or memory.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.supervisor_scale import compile_standin  # noqa: E402
from fleet.startup_render import build_zipapp, render_contract  # noqa: E402
from fleet.vm_contract import AGENT_USER  # noqa: E402
from testbed.vm_fleet import run_ip, wait_for  # noqa: E402
from testbed.vm_host import Host  # noqa: E402
from testbed.vm_image import ensure_image  # noqa: E402

PARALLELISM, ROUND_DELAY = 50, 0.2
STEADY_SECONDS = 30.0
REGISTRY_PORT = 9000
LIB = "/opt/pilot-fleet/lib"


def product_directives() -> list[str]:
    """The agents' unit's privilege directives, as startup/swarm.sh and startup/common.sh write them."""
    swarm = (REPO / "startup" / "swarm.sh").read_text()
    common = (REPO / "startup" / "common.sh").read_text()
    sandbox = common.split("unit_sandbox() {", 1)[1].split("cat <<EOF2\n", 1)[1].split("EOF2", 1)[0]
    lines = [line for line in sandbox.splitlines() if line and not line.startswith("ReadWritePaths=")]
    caps = re.search(r"^CapabilityBoundingSet=.*$", swarm, re.M)
    assert caps and "Delegate=yes" in swarm
    writable = ["/var/lib/bench", "/run/bench", LIB, "-/sys/fs/cgroup/unified/system.slice",
                "-/sys/fs/cgroup/systemd/system.slice", "-/sys/fs/cgroup/system.slice"]
    return ["Delegate=yes", caps.group(0), *lines, f"ReadWritePaths={' '.join(writable)}"]


def config(agents: int, shape: str) -> dict[str, object]:
    return {"target_agents": agents, "daemon": "/opt/bench/standin-daemon",
            "registry": f"127.0.0.1:{REGISTRY_PORT}", "beacon": "127.0.0.1:9", "base_udp_port": 20000,
            "state_dir": f"/var/lib/bench/{shape}", "run_dir": f"/run/bench/{shape}",
            "spawn_parallelism": PARALLELISM, "round_delay_seconds": ROUND_DELAY,
            "new_registrations_per_minute": 1e9, "new_registration_burst": agents, "health_threshold": 0.95,
            "rollout_max_unavailable": 0.1, "stop_batch": 500, "stop_batch_delay_seconds": 0.2,
            "agent_user": AGENT_USER if shape == "sandboxed" else ""}


def measure(host: Host, agents: int, shape: str) -> dict[str, float]:
    conf = f"{LIB}/{shape}.json"
    host.path(conf).write_text(json.dumps(config(agents, shape)))
    props = product_directives() if shape == "sandboxed" else ["Delegate=yes"]
    argv = ["systemd-run", "--quiet", "--unit", f"bench-{shape}", "-p", "KillMode=mixed",
            *(arg for prop in props for arg in ("-p", prop)),
            "/usr/bin/python3", f"{LIB}/pilot-supervisor.pyz", "run", "--config", conf]
    host.run("mkdir", "-p", f"/var/lib/bench/{shape}", f"/run/bench/{shape}")
    started = time.monotonic()
    launched = host.run(*argv)
    assert launched.returncode == 0, launched.stderr
    sockets = host.path(f"/run/bench/{shape}/agents")
    wait_for(lambda: sockets.exists() and sum(1 for _ in sockets.glob("*.sock")) >= agents,
             20 * math.ceil(agents / PARALLELISM) * ROUND_DELAY + 60, f"{shape}: not at target")
    to_target = time.monotonic() - started
    time.sleep(3.0)
    before, t0 = usage(host, shape), time.monotonic()
    time.sleep(STEADY_SECONDS)
    after, t1 = usage(host, shape), time.monotonic()
    status = json.loads(host.path(f"/run/bench/{shape}/status.json").read_text())
    assert status["running"] == agents, status
    host.run("systemctl", "stop", f"bench-{shape}.service", timeout=300)
    span = t1 - t0
    return {"to_target": to_target, "floor": math.ceil(agents / PARALLELISM) * ROUND_DELAY,
            "supervisor_cpu": (after["supervisor_cpu"] - before["supervisor_cpu"]) / span,
            "agents_cpu": (after["agents_cpu"] - before["agents_cpu"]) / span,
            "supervisor_mb": after["supervisor_mb"], "agents_mb": after["agents_mb"],
            "counted_by": status["agents_counted_by"], "user": status["agents_user"] or "root"}


def usage(host: Host, shape: str) -> dict[str, float]:
    """CPU seconds and resident MB of the unit's main process and of every other process of the unit."""
    main = host.unit(f"bench-{shape}.service", "MainPID")["MainPID"]
    script = (
        "import json,os,sys\n"
        "main=int(sys.argv[1]); tick=os.sysconf('SC_CLK_TCK'); page=os.sysconf('SC_PAGE_SIZE')\n"
        "def unit(pid):\n"
        "  path=[l for l in open(f'/proc/{pid}/cgroup').read().splitlines() if l.startswith('0::')][0][3:]\n"
        "  return path.split('/')[:3]\n"
        "out={'supervisor_cpu':0.0,'agents_cpu':0.0,'supervisor_mb':0.0,'agents_mb':0.0}\n"
        "mine=unit(main)\n"
        "for p in os.listdir('/proc'):\n"
        "  if not p.isdigit(): continue\n"
        "  try:\n"
        "    if unit(p)!=mine: continue\n"
        "    f=open(f'/proc/{p}/stat').read().rsplit(')',1)[1].split()\n"
        "    rss=int(open(f'/proc/{p}/statm').read().split()[1])*page/2**20\n"
        "  except (OSError, IndexError): continue\n"
        "  who='supervisor' if int(p)==main else 'agents'\n"
        "  out[who+'_cpu']+=(int(f[11])+int(f[12]))/tick; out[who+'_mb']+=rss\n"
        "print(json.dumps(out))\n")
    result = host.run("python3", "-c", script, main)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    args = parser.parse_args()
    image = ensure_image()
    with tempfile.TemporaryDirectory(prefix="pilot-fleet-sandbox-bench-") as tmp:
        base = Path(tmp)
        standin = compile_standin(base)
        upper = base / "host" / "upper"
        for rel, data, mode in (("opt/bench/standin-daemon", standin.read_bytes(), 0o755),
                                (f"{LIB[1:]}/pilot-supervisor.pyz", build_zipapp(), 0o644),
                                (f"{LIB[1:]}/contract.json", render_contract().encode(), 0o644)):
            (upper / rel).parent.mkdir(parents=True, exist_ok=True)
            (upper / rel).write_bytes(data)
            (upper / rel).chmod(mode)
        namespace = f"pfsb{tmp[-6:]}"
        run_ip("netns", "add", namespace)
        run_ip("-n", namespace, "link", "set", "lo", "up")
        host = Host("bench", "127.0.0.1", {}, "", base / "host", namespace, image, {})
        try:
            host.boot()
            # its systemd answers (the image's guest agent keeps the boot "starting" without a network)
            wait_for(lambda: host.run("systemctl", "show", "-p", "Version").returncode == 0, 120,
                     "the container's systemd did not answer")
            assert host.run("useradd", "--system", "--user-group", "--no-create-home", AGENT_USER).returncode == 0
            registry = host.run("systemd-run", "--quiet", "--unit", "bench-registry", "python3", "-c",
                                f"import socket\ns=socket.create_server(('127.0.0.1',{REGISTRY_PORT}),backlog=4096)\n"
                                "while True: s.accept()[0].close()")
            assert registry.returncode == 0, registry.stderr
            results = {shape: measure(host, args.agents, shape) for shape in ("plain", "sandboxed")}
        finally:
            host.close()
            subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)
            shutil.rmtree(base / "host", ignore_errors=True)
    print(f"{args.agents:,} agents (stand-in daemons), one run:")
    print(f"{'shape':>10} {'agents as':>12} {'counted by':>10} {'to target s':>12} {'floor s':>8} {'ratio':>6} "
          f"{'sup cpu %':>9} {'agents cpu %':>12} {'sup MB':>7} {'agents MB':>9}")
    for shape, r in results.items():
        print(f"{shape:>10} {r['user']:>12} {r['counted_by']:>10} {r['to_target']:>12.1f} {r['floor']:>8.1f} "
              f"{r['to_target'] / r['floor']:>6.2f} {100 * r['supervisor_cpu']:>9.2f} {100 * r['agents_cpu']:>12.2f} "
              f"{r['supervisor_mb']:>7.1f} {r['agents_mb']:>9.1f}")
    plain, boxed = results["plain"], results["sandboxed"]
    print(f"sandboxed / plain: time to target {boxed['to_target'] / plain['to_target']:.2f}x, agents' memory "
          f"{boxed['agents_mb'] / plain['agents_mb']:.2f}x, supervisor's memory "
          f"{boxed['supervisor_mb'] / plain['supervisor_mb']:.2f}x")
    ok = boxed["to_target"] <= 1.1 * plain["to_target"] and boxed["agents_mb"] <= 1.1 * plain["agents_mb"]
    print(f"within the goal (sandboxed within 1.1x of plain): {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
