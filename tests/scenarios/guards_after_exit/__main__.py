"""A project startup script that names every guard and every tuning key, but exits before its lock and boot
marker run: a pattern search finds them all; the pack's prologue check does not (guards that run)."""

import pulumi_gcp as gcp

SCRIPT = """#!/bin/bash
set -euo pipefail
exit 0
exec 9>/run/pilot-fleet/startup.lock
flock 9
BOOT_MARKER="/run/pilot-fleet/startup-done.$(</proc/sys/kernel/random/boot_id)"
cat <<TUNING
kernel.pid_max = 4194304
fs.file-max = 2097152
fs.nr_open = 1048576
net.core.rmem_max = 16777216
net.core.wmem_max = 16777216
net.ipv4.udp_mem = 4096 87380 16777216
net.ipv4.ip_local_reserved_ports = 10000-12999
TUNING
echo 'TasksMax=infinity LimitNOFILE=1048576'
for i in $(seq 500); do pilot-daemon & done
"""

gcp.compute.ProjectMetadataItem("startup-script", key="startup-script", value=SCRIPT)
