"""The startup-script texts the guard scenarios and tests/test_policy_rules.py judge, built from one prologue and
one tuning block: the fleet's own shape (startup/common.sh), and the ways a script can look guarded and not be.
The scenario programs import it (the offline plan runs them with this repository importable)."""

from __future__ import annotations

# The fleet's guarding prologue: strict mode, the lock, the once-per-boot marker, leaving when it exists.
PROLOGUE = """#!/bin/bash
set -euo pipefail
RUN_DIR="/run/pilot-fleet"
mkdir -p "${RUN_DIR}"
exec 9>"${RUN_DIR}/startup.lock"
flock 9
BOOT_MARKER="${RUN_DIR}/startup-done.$(<"/proc/sys/kernel/random/boot_id")"
if [[ -e "${BOOT_MARKER}" ]]; then
  exit 0
fi
"""
# Every kernel key and unit limit the guard rule requires, written as a VM would write them, and the keys applied.
TUNING = """cat >/etc/sysctl.d/60-pilot.conf <<TUNING
kernel.pid_max = 4194304
fs.file-max = 2097152
fs.nr_open = 1048576
net.core.rmem_max = 16777216
net.core.wmem_max = 16777216
net.ipv4.udp_mem = 4096 87380 16777216
net.ipv4.ip_local_reserved_ports = 10000-12999
TUNING
sysctl -q -p /etc/sysctl.d/60-pilot.conf
printf '[Service]\\nTasksMax=infinity\\nLimitNOFILE=1048576\\n' >/etc/systemd/system/pilot-agents.service.d/50.conf
"""
DONE = 'touch "${BOOT_MARKER}"\n'

# The run directory a command's output: every run its own lock and marker.
COMPUTED_LOCK = PROLOGUE.replace('RUN_DIR="/run/pilot-fleet"', 'RUN_DIR="$(mktemp -d)"') + TUNING + DONE
# The tuning in a function nothing calls.
TUNING_NEVER_CALLED = (PROLOGUE + "tune() {\n" + TUNING + "}\nstart_agents() {\n"
                       "  systemctl start pilot-agents.service\n}\nstart_agents\n" + DONE)
# Every guard and tuning key named, after an exit that skips them all.
GUARDS_AFTER_EXIT = PROLOGUE.replace('mkdir -p "${RUN_DIR}"\n', 'exit 0\nmkdir -p "${RUN_DIR}"\n') + TUNING + \
    "for i in $(seq 500); do pilot-daemon & done\n"
