"""A startup script with the guarding prologue's shape, whose run directory is a command's output
(`RUN_DIR="$(mktemp -d)"`): every run gets its own lock and boot marker, so nothing stops a second run, and a
reboot's run finds no marker. `startup-script-guarded` must reject it (the lock and marker must be fixed paths in
/run). The tuning is all there and runs."""

import pulumi_gcp as gcp

SCRIPT = """#!/bin/bash
set -euo pipefail
RUN_DIR="$(mktemp -d)"
mkdir -p "${RUN_DIR}"
exec 9>"${RUN_DIR}/startup.lock"
flock 9
BOOT_MARKER="${RUN_DIR}/startup-done.$(<"/proc/sys/kernel/random/boot_id")"
if [[ -e "${BOOT_MARKER}" ]]; then
  exit 0
fi
cat >/etc/sysctl.d/60-pilot.conf <<TUNING
kernel.pid_max = 4194304
fs.file-max = 2097152
fs.nr_open = 1048576
net.core.rmem_max = 16777216
net.core.wmem_max = 16777216
net.ipv4.udp_mem = 4096 87380 16777216
net.ipv4.ip_local_reserved_ports = 10000-12999
TUNING
printf '[Service]\\nTasksMax=infinity\\nLimitNOFILE=1048576\\n' >/etc/systemd/system/pilot-agents.service.d/50.conf
touch "${BOOT_MARKER}"
"""

gcp.compute.ProjectMetadataItem("startup-script", key="startup-script", value=SCRIPT)
