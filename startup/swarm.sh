# shellcheck shell=bash
# pilot-fleet startup script, swarm part: the agent supervisor, its unit and the operators' command. The supervisor,
# not this script, owns the agents: it brings the host to exactly its target, paced, and follows later attribute
# changes live (day two). Joined after common.sh by the renderer.

AGENTS_UNIT="pilot-agents.service"
AGENTS_DROPIN="${UNIT_DIR}/${AGENTS_UNIT}.d/50-limits.conf"
CONF_DIR="${PILOT_ROOT}/etc/pilot-fleet"
SUPERVISOR_CONF="${CONF_DIR}/supervisor.json"
AGENTS_TOOL="${PILOT_ROOT}/usr/local/sbin/pilot-fleet-agents"
HOLD_FILE="${STATE_DIR}/hold"

# The supervisor's own unit. The agents live in its cgroup (TasksMax and LimitNOFILE from 50-limits.conf), never in
# google-startup-scripts.service's, and in a child cgroup of their own (Delegate=yes): the supervisor counts as
# agents only the processes there. It runs as root with four capabilities, to start agents as their own user
# (setuid, setgid), to give them their directories (chown) and to stop them (kill); the agents run as that user
# with none. KillMode=mixed: SIGTERM reaches the supervisor alone, which stops the agents in paced batches (100 a
# second, then 30 s grace). ExecStopPost gives the same paced stop to any agent a supervisor left behind (killed,
# crashed), so a stop always ends with no agent running; systemd kills whatever is left after TimeoutStopSec.
agents_unit() {
  local stop_seconds cgroups="" hierarchy mounted="# the agents' state is on the boot disk (the VM has no state device)"
  # At boot systemd starts this enabled unit before google-startup-scripts.service has mounted the state disk:
  # the condition skips it until this script has mounted it and starts it (never new identities on the boot disk).
  [[ -n "${attr[state_device]}" ]] && mounted="ConditionPathIsMountPoint=${STATE_DIR}"
  # the supervisor's own paced-stop budget (its batches, delay and grace), plus a minute of slack
  stop_seconds="$(python3 "${SUPERVISOR_LIB}/pilot-supervisor.pyz" stop-budget --config "${SUPERVISOR_CONF}")" ||
    die "the supervisor could not compute its stop budget from ${SUPERVISOR_CONF}"
  stop_seconds=$((stop_seconds + 60))
  # its delegated cgroup stays writable under ProtectKernelTunables (cgroup v2, or a hybrid host's two hierarchies)
  for hierarchy in "" /unified /systemd; do
    cgroups+=" -/sys/fs/cgroup${hierarchy}/system.slice/${AGENTS_UNIT}"
  done
  cat <<EOF2
[Unit]
Description=pilot-fleet agents: keeps this host at its pilot-daemon target
Wants=network-online.target
After=network-online.target
${mounted}

[Service]
ExecStart=/usr/bin/python3 ${SUPERVISOR_LIB}/pilot-supervisor.pyz run --config ${SUPERVISOR_CONF}
ExecStopPost=-/usr/bin/python3 ${SUPERVISOR_LIB}/pilot-supervisor.pyz reap --config ${SUPERVISOR_CONF}
Restart=always
RestartSec=10
KillMode=mixed
TimeoutStopSec=${stop_seconds}
Delegate=yes
CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_CHOWN CAP_KILL
# /run is empty at boot, and systemd may start this unit before the startup script has made the run directory: the
# sandbox below names it, and a missing one would fail the start at NAMESPACE. systemd makes it first instead, and
# keeps it across stops (the startup script's lock and boot marker live there too).
RuntimeDirectory=${RUN_DIR##*/}
RuntimeDirectoryPreserve=yes
$(unit_sandbox "${STATE_DIR}" "${RUN_DIR}" "${INSTALL_DIR}" "${CONF_DIR}${cgroups}")

[Install]
WantedBy=multi-user.target
EOF2
}

# The operators' command. systemd carries out the stop, so it survives a dropped SSH session.
agents_tool() {
  cat <<EOF2
#!/bin/bash
# pilot-fleet-agents stop [--hold] | start | status   (written by the pilot-fleet startup script)
set -euo pipefail
case "\${1:-status}" in
  stop)
    if [[ "\${2:-}" == --hold ]]; then
      touch "${HOLD_FILE}"
      echo "held: later boots leave the agents stopped until 'pilot-fleet-agents start'"
    fi
    systemctl stop --no-block ${AGENTS_UNIT}
    echo "stopping the agents in paced batches, detached from this session; follow: journalctl -fu ${AGENTS_UNIT}"
    ;;
  start)
    rm -f "${HOLD_FILE}"
    systemctl start --no-block ${AGENTS_UNIT}
    ;;
  status)
    cat "${RUN_DIR}/status.json" 2>/dev/null || echo "no status yet"
    ;;
  *)
    echo "usage: pilot-fleet-agents stop [--hold] | start | status" >&2
    exit 2
    ;;
esac
EOF2
}

# The supervisor installs the attributes' daemon version (its wheel sha256-checked, its -version and flags
# checked) under ${INSTALL_DIR}/versions/ and writes its config: the same code that carries out live changes.
setup_swarm() {
  local units=0 config=0 prepared limits agent_user="" routed
  if ((SYSTEM_USERS)); then
    agent_user="$(pilot_supervisor contract agent_user)"
    ensure_user "${agent_user}"
  fi
  if [[ -n "${attr[state_device]}" ]]; then
    mount_disk "${attr[state_device]}" "${STATE_DIR}" "agent state"
  else
    log "WARNING: no agent state disk (state_device): the agents' identities live on the boot disk and die with the VM"
  fi
  install_copy "${BOOT_ZIPAPP}" "${SUPERVISOR_LIB}/pilot-supervisor.pyz" && config=1
  install_copy "${RUN_DIR}/contract.json" "${SUPERVISOR_LIB}/contract.json" && config=1
  rm -f "${SUPERVISOR_LIB}/pilot_supervisor.py" # the single-file supervisor of releases before the zipapp
  prepared="$(python3 "${SUPERVISOR_LIB}/pilot-supervisor.pyz" prepare --metadata-url "${METADATA_URL}" \
    --install-dir "${INSTALL_DIR}" --state-dir "${STATE_DIR}" --run-dir "${RUN_DIR}" --config "${SUPERVISOR_CONF}" \
    --daemon "${PILOT_DAEMON_BIN:-}" --agent-user "${agent_user}")" ||
    die "the supervisor could not install pilot-daemon ${attr[version]} or write its config (above)"
  [[ "${prepared}" == changed ]] && config=1
  log "pilot-daemon ${attr[version]} installed and checked; supervisor config ${prepared}"
  # each registration address gets its agents' user and its policy route (a VM with one address: none)
  if ((SYSTEM_USERS)); then
    routed="$(python3 "${SUPERVISOR_LIB}/pilot-supervisor.pyz" sources --config "${SUPERVISOR_CONF}")" ||
      die "the registration addresses could not be set up (above)"
    [[ -z "${routed}" ]] || log "registration addresses: ${routed//$'\n'/; }"
  fi
  install_file "${AGENTS_TOOL}" "$(agents_tool)" && chmod 0755 "${AGENTS_TOOL}"
  install_file "${UNIT_DIR}/${AGENTS_UNIT}" "$(agents_unit)" && units=1
  limits="$(printf '[Service]\nTasksMax=infinity\nLimitNOFILE=%s\n' "$(pilot_supervisor contract agent_nofile)")"
  install_file "${AGENTS_DROPIN}" "${limits}" && units=1
  limit_user_slice && units=1
  if ((units)); then
    systemctl daemon-reload || die "systemctl daemon-reload failed"
  fi
  if [[ -e "${HOLD_FILE}" ]]; then
    systemctl enable --quiet "${AGENTS_UNIT}" || die "systemctl enable ${AGENTS_UNIT} failed"
    log "agents are held (${HOLD_FILE}); not starting ${AGENTS_UNIT}: run 'pilot-fleet-agents start'"
    return 0
  fi
  start_unit "${AGENTS_UNIT}" $((units || config))
}
