"""Facts about Pilot Protocol and Compute Engine that the fleet is built against (see shared/PILOT_FACTS.md).

Every port, metadata key and default range is named here once; the stack, the startup script renderer,
the policy pack and the post-deploy check all read them from this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PROJECT_NAME = "pilot-fleet"
PILOT_VERSION = "1.18.0"

# The rendezvous process: registry (TCP), beacon (UDP), dashboard and JSON API (TCP).
REGISTRY_PORT = 9000
BEACON_PORT = 9001
DASHBOARD_PORT = 3000
STATS_PATH = "/api/stats"

# Registry rate limit for NEW identities per source IP (token bucket: burst 10, one token every 6 s).
NEW_REGISTRATIONS_PER_MINUTE = 10

# Agents: one UDP tunnel port each, base + index.
DEFAULT_BASE_UDP_PORT = 10000
# Linux default net.ipv4.ip_local_port_range; agent ports must stay out of it.
EPHEMERAL_PORT_RANGE = (32768, 60999)
MAX_PORT = 65535

# Memory budget (seed fleet): ~3 GB for the OS, ~60% headroom over the agents' idle memory for connection bursts.
DEFAULT_OS_RESERVE_MB = 3072
DEFAULT_HEADROOM_PERCENT = 60
# The seed fleet's operational figure per idle agent; 1.18.0 measured 13.1-13.4 MB RSS (see README).
DEFAULT_AGENT_MEMORY_MB = 10.0
# OS threads per daemon (7-8 measured): each counts against pid_max and TasksMax.
THREADS_PER_AGENT = 8
# Open file descriptors per idle daemon (15 measured with 1.18.0).
FDS_PER_AGENT = 15
# What the startup script sets (startup/startup.sh tune_kernel); the capacity planner's PID and fd ceilings.
KERNEL_PID_MAX = 4194304
KERNEL_FILE_MAX = 2097152

# Spawn pacing (seed: 10-20 concurrent starts per round, ~3 s between rounds; 50 at once overloads the registry).
DEFAULT_SPAWN_PARALLELISM = 10
MAX_SPAWN_PARALLELISM = 20
DEFAULT_ROUND_DELAY_SECONDS = 3.0

# A live rollout (new daemon version, GOGC, registry) restarts at most this share of a host's agents at once.
DEFAULT_ROLLOUT_MAX_UNAVAILABLE = 0.1

# The supervisor's health endpoint on every swarm host (GET /healthz: 200 when running >= target x threshold).
SUPERVISOR_HEALTH_PORT = 8081
SUPERVISOR_HEALTH_PATH = "/healthz"

# The stack outputs' schema (README "Stack outputs"): fields may be added within a version, never renamed.
OUTPUTS_SCHEMA_VERSION = 2

# Monitoring: alert when online agents fall below this share of the expected total.
DEFAULT_ALERT_THRESHOLD = 0.95


def min_online(expected: int, threshold: float) -> int:
    """Fewest online agents that still count as healthy: ceil(expected x threshold)."""
    return math.ceil(round(expected * threshold, 6))  # rounded first: 9500 x 0.95 is 9025, not 9026


# Google's ranges: IAP TCP forwarding (SSH and the dashboard reach hosts through it), and the health checkers
# that probe managed instance groups' VMs (cloud.google.com/load-balancing/docs/health-check-concepts).
IAP_RANGE = "35.235.240.0/20"
HEALTH_CHECK_RANGES = ("35.191.0.0/16", "130.211.0.0/22")
# Autohealing waits this long after a VM boots before its health counts (Compute Engine's maximum is 3600 s).
AUTOHEALING_INITIAL_DELAY_SECONDS = 1800

BOOT_IMAGE = "debian-cloud/debian-12"

# Instance metadata keys the fleet sets on every VM; the startup script reads exactly these.
class MetadataKey:
    ROLE = "pilot-role"
    AGENT_TARGET = "pilot-agent-target"
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
    # Never set by the fleet: a `-standby` rendezvous never receives the registry (PILOT_FACTS). The boot path and
    # the policy pack refuse a VM that carries it.
    STANDBY_OF = "pilot-standby-of"
    HEALTH_PORT = "pilot-health-port"
    HEALTH_THRESHOLD = "pilot-health-threshold"
    # the version's wheels and optional flags (fleet/facts/data/pilot_releases.yaml), as one JSON value
    DAEMON_RELEASE = "pilot-daemon-release"
    ROLLOUT_MAX_UNAVAILABLE = "pilot-rollout-max-unavailable"
    # Compute Engine's own keys, set for hardening and for the supervisor's status reports.
    GUEST_ATTRIBUTES = "enable-guest-attributes"
    OS_LOGIN = "enable-oslogin"
    BLOCK_PROJECT_SSH_KEYS = "block-project-ssh-keys"
    SERIAL_PORT = "serial-port-enable"
    STARTUP_SCRIPT = "startup-script"


# The label on a pool's VMs (from its instance template): Prometheus' gce_sd finds them by it.
POOL_LABEL = "pilot-pool"

ROLE_RENDEZVOUS = "rendezvous"
ROLE_SWARM = "swarm"

# Instance-level metadata keys that run scripts; any of them bypasses or doubles the project-level script.
SCRIPT_METADATA_KEYS = ("startup-script", "startup-script-url", "user-data", "user-data-encoding")
SCRIPT_METADATA_PREFIXES = ("shutdown-script", "sysprep-specialize-script-")
SCRIPT_METADATA_PATTERN = r"^windows-.*-script-.*$"


@dataclass(frozen=True)
class AttributeBounds:
    """What a swarm VM accepts for one numeric `pilot-*` attribute: config validation and the supervisor (rendered
    in; the startup script asks it) take these, at boot and on every live change, so a stack that plans is a stack
    whose VMs boot and converge."""

    attribute: str
    low: float
    high: float
    default: float | None  # None: the stack always sets it
    why: str
    whole: bool = True  # a whole number; else any decimal number
    low_open: bool = False  # the low end itself is refused


# Agent ports start at or above this: ports below 1024 are privileged, and no agent runs as root's service there.
MIN_AGENT_PORT = 1024

AGENT_BOUNDS: dict[str, AttributeBounds] = {
    "target_agents": AttributeBounds(
        MetadataKey.AGENT_TARGET, 1, MAX_PORT - MIN_AGENT_PORT + 1, None,
        "one UDP port per agent, all of them between 1024 and 65535"),
    "base_udp_port": AttributeBounds(
        MetadataKey.BASE_UDP_PORT, MIN_AGENT_PORT, MAX_PORT, DEFAULT_BASE_UDP_PORT,
        "agent ports are base + index: not privileged, not past 65535"),
    "spawn_parallelism": AttributeBounds(
        MetadataKey.SPAWN_PARALLELISM, 1, MAX_SPAWN_PARALLELISM, DEFAULT_SPAWN_PARALLELISM,
        "the seed fleet: 10-20 starts per round; 50 at once overloaded the registry"),
    "new_registrations_per_minute": AttributeBounds(
        MetadataKey.NEW_REGISTRATIONS_PER_MINUTE, 1, 1_000_000, NEW_REGISTRATIONS_PER_MINUTE,
        "the registry's limit of new identities per source IP (10 in the public rendezvous)"),
    "gogc": AttributeBounds(
        MetadataKey.GOGC, 10, 1000, 100,
        "Go's GC target percent: 50 on memory-tight VMs (seed), 100 is Go's default"),
    "health_port": AttributeBounds(
        MetadataKey.HEALTH_PORT, 1, MAX_PORT, SUPERVISOR_HEALTH_PORT,
        "the supervisor's /healthz and /metrics"),
    "round_delay_seconds": AttributeBounds(
        MetadataKey.ROUND_DELAY_SECONDS, 0, 3600, DEFAULT_ROUND_DELAY_SECONDS,
        "seconds between spawn rounds (seed: ~3 s); more than an hour is a typo", whole=False),
    "health_threshold": AttributeBounds(
        MetadataKey.HEALTH_THRESHOLD, 0, 1, DEFAULT_ALERT_THRESHOLD,
        "the share of the target that must run for /healthz to be 200", whole=False, low_open=True),
    "rollout_max_unavailable": AttributeBounds(
        MetadataKey.ROLLOUT_MAX_UNAVAILABLE, 0, 1, DEFAULT_ROLLOUT_MAX_UNAVAILABLE,
        "the share of a host's agents a live rollout may restart at once (at least one)", whole=False,
        low_open=True),
}
# The store disk's device name (the rendezvous attaches it so; the script finds /dev/disk/by-id/google-<name>).
STORE_DEVICE = "pilot-store"
# A swarm VM's agent state disk (identities, registration markers), mounted on /var/lib/pilot-fleet: it outlives the
# VM (a recreated pool VM, a replaced host), so the agents come back as the identities the registry knows.
STATE_DEVICE = "pilot-agents-state"
STATE_DISK_TYPE = "pd-balanced"
# Disk sizes (GB) of every fleet VM: its boot disk, and a swarm VM's agent state disk (identities are kilobytes;
# 10 GB is Compute Engine's smallest pd-balanced disk).
DEFAULT_BOOT_DISK_GB = 20
DEFAULT_STATE_DISK_GB = 10
DISK_TYPE = "pd-balanced"
# Defaults of the attributes that are not numbers (their forms are checked where the script reads them).
ATTRIBUTE_DEFAULTS: dict[str, str] = {
    MetadataKey.STORE_DEVICE: STORE_DEVICE,
}
