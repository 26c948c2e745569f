"""Facts about Pilot Protocol and Compute Engine that the fleet is built against (docs/pilot-facts.md).

Every port, metadata key and default range is named here once; the stack, the startup script renderer,
the policy pack and the post-deploy check all read them from this module.
"""

from __future__ import annotations

import math

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
# The seed fleet's operational figure per idle agent; 1.18.0 measured 13.1-13.4 MB RSS (docs/pilot-facts.md).
DEFAULT_AGENT_MEMORY_MB = 10.0
# The most an idle pilot-daemon was measured to use (1.18.0): a budget per agent, headroom included, under it swaps.
IDLE_AGENT_RSS_MB = 13.4
# OS threads per daemon (7-8 measured): each counts against pid_max and TasksMax.
THREADS_PER_AGENT = 8
# Open file descriptors per idle daemon (15 measured with 1.18.0).
FDS_PER_AGENT = 15
# What the startup script sets (startup/startup.sh tune_kernel); the capacity planner's PID and fd ceilings.
KERNEL_PID_MAX = 4194304
KERNEL_FILE_MAX = 2097152

# Spawn pacing (seed: 10-20 concurrent starts per round, ~3 s between rounds; "50 at once overloads the registry"
# was the seed's registry). The pinned rendezvous, measured (bench/rendezvous_capacity.py), sustains thousands of
# registrations a second: rounds up to 200 per VM are what a 4-minute cold start of 5,000 agents needs, and the
# planner keeps the fleet's rounds together under its measured rate (fleet/capacity/cold_start.py).
DEFAULT_SPAWN_PARALLELISM = 10
MAX_SPAWN_PARALLELISM = 200
DEFAULT_ROUND_DELAY_SECONDS = 3.0

# A live rollout (new daemon version, GOGC, registry) restarts at most this share of a host's agents at once.
DEFAULT_ROLLOUT_MAX_UNAVAILABLE = 0.1

# The supervisor's health endpoint on every swarm host (GET /healthz: 200 when running >= target x threshold).
SUPERVISOR_HEALTH_PORT = 8081
SUPERVISOR_HEALTH_PATH = "/healthz"

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

# The label on a pool's VMs (from its instance template): Prometheus' gce_sd finds them by it.
POOL_LABEL = "pilot-pool"

ROLE_RENDEZVOUS = "rendezvous"
ROLE_SWARM = "swarm"

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
