"""A startup script with the guarding prologue as the fleet writes it, whose kernel and unit tuning sit in a
function that nothing calls: every key is in the text, none is applied. `startup-script-guarded` must reject it
(the tuning must be on the boot path)."""

import pulumi_gcp as gcp

SCRIPT = """#!/bin/bash
set -euo pipefail
RUN_DIR="/run/pilot-fleet"
mkdir -p "${RUN_DIR}"
exec 9>"${RUN_DIR}/startup.lock"
flock 9
BOOT_MARKER="${RUN_DIR}/startup-done.$(<"/proc/sys/kernel/random/boot_id")"
if [[ -e "${BOOT_MARKER}" ]]; then
  exit 0
fi
tune() {
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
}
start_agents() {
  systemctl start pilot-agents.service
}
start_agents
touch "${BOOT_MARKER}"
"""

gcp.compute.ProjectMetadataItem("startup-script", key="startup-script", value=SCRIPT)
