#!/bin/bash
# pilot-fleet project-level startup script: the ONE boot script of every fleet VM, rendered by the Pulumi
# program into the project metadata item `startup-script`. Compute Engine runs it as root on every boot.
#
# What it does, in order, and why (figures in shared/PILOT_FACTS.md):
#   1. one run at a time (flock) and at most once per boot (a marker keyed on the kernel's boot id): a second
#      run must never start a second fleet;
#   2. reads and validates every `pilot-*` instance attribute before touching anything;
#   3. reports loudly if instance-level script keys exist (they bypass or double this script);
#   4. kernel tuning as a sysctl drop-in, applied, then read back and verified: PIDs, file descriptors, socket
#      buffers, and the agents' UDP ports reserved out of the ephemeral range;
#   5. limits on the unit that owns the agents (TasksMax, LimitNOFILE) and on operators' shells (user-.slice);
#      never a restart of systemd-logind (it can kill SSH sessions).
# Not yet here (issue 3, open): installing Pilot and the agent supervisor unit; step 5 prepares its limits.
#
# Sandbox seams, honoured only when set (tests): PILOT_ROOT prefixes every path written, PILOT_METADATA_URL
# replaces the metadata server, PILOT_BOOT_ID_FILE replaces /proc/sys/kernel/random/boot_id; sysctl and
# systemctl are found on PATH.
set -euo pipefail

PILOT_ROOT="${PILOT_ROOT:-}"
METADATA_URL="${PILOT_METADATA_URL:-http://metadata.google.internal/computeMetadata/v1}"
BOOT_ID_FILE="${PILOT_BOOT_ID_FILE:-/proc/sys/kernel/random/boot_id}"
STATE_DIR="${PILOT_ROOT}/var/lib/pilot-fleet"
RUN_DIR="${PILOT_ROOT}/run/pilot-fleet"
SYSCTL_FILE="${PILOT_ROOT}/etc/sysctl.d/60-pilot-fleet.conf"
AGENTS_UNIT="pilot-agents.service"
AGENTS_DROPIN="${PILOT_ROOT}/etc/systemd/system/${AGENTS_UNIT}.d/50-limits.conf"
USER_SLICE_DROPIN="${PILOT_ROOT}/etc/systemd/system/user-.slice.d/50-pilot-fleet.conf"
AGENT_NOFILE=1048576
SCRIPT_KEYS_RE='^(startup-script|startup-script-url|user-data|user-data-encoding|shutdown-script.*|sysprep-specialize-script-.*|windows-.*-script-.*)$'

log() { printf 'pilot-fleet startup: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

metadata() {
  curl -fsS --retry 5 --retry-connrefused --max-time 10 -H 'Metadata-Flavor: Google' "${METADATA_URL}/$1"
}

attribute() { metadata "instance/attributes/$1"; }

# Best effort: guest attributes are for operators' eyes (at most 10 writes a minute per VM).
guest_attribute() {
  curl -fsS --max-time 5 -X PUT -H 'Metadata-Flavor: Google' --data "$2" \
    "${METADATA_URL}/instance/guest-attributes/pilot/$1" >/dev/null 2>&1 || log "could not publish guest attribute $1"
}

require_int() {
  local name="$1" value="$2" min="$3" max="$4"
  [[ "${value}" =~ ^[0-9]+$ ]] || die "instance attribute ${name}='${value}' is not a whole number"
  ((value >= min && value <= max)) || die "instance attribute ${name}=${value} is outside ${min}..${max}"
}

# Write a file atomically; returns 1 (and leaves it alone) when the content is already there.
install_file() {
  local path="$1" content="$2" tmp
  if [[ -f "${path}" ]] && [[ "$(cat "${path}")" == "${content}" ]]; then
    return 1
  fi
  mkdir -p "$(dirname "${path}")"
  tmp="$(mktemp "${path}.XXXXXX")"
  printf '%s\n' "${content}" >"${tmp}"
  chmod 0644 "${tmp}"
  mv -f "${tmp}" "${path}"
}

read_attributes() {
  role="$(attribute pilot-role)" || die "instance attribute pilot-role is missing"
  case "${role}" in
    rendezvous) ;;
    swarm)
      target="$(attribute pilot-agent-target)" || die "instance attribute pilot-agent-target is missing"
      base_port="$(attribute pilot-base-udp-port)" || die "instance attribute pilot-base-udp-port is missing"
      require_int pilot-agent-target "${target}" 1 55000
      require_int pilot-base-udp-port "${base_port}" 1024 65535
      last_port=$((base_port + target - 1))
      ((last_port <= 65535)) || die "agent ports ${base_port}-${last_port} run past 65535"
      ;;
    *) die "unknown pilot-role '${role}' (expected rendezvous or swarm)" ;;
  esac
}

report_script_keys() {
  local keys ghosts
  keys="$(metadata 'instance/attributes/')" || { log "could not list instance attributes"; return 0; }
  ghosts="$(grep -E "${SCRIPT_KEYS_RE}" <<<"${keys}" | sort | tr "\n" " " || true)"
  if [[ -n "${ghosts}" ]]; then
    log "WARNING: instance-level script keys present: ${ghosts}- they bypass or double this project-level script"
    guest_attribute bypassed-startup-script "${ghosts% }"
  fi
}

tune_kernel() {
  local settings
  settings="$(cat <<EOF
# pilot-fleet: written by the project startup script; the seed fleet hit each of these limits in turn.
kernel.pid_max = 4194304
fs.file-max = 2097152
fs.nr_open = ${AGENT_NOFILE}
net.core.rmem_max = 16777216
net.core.wmem_max = 16777216
net.core.rmem_default = 1048576
net.core.wmem_default = 1048576
net.ipv4.udp_mem = 4096 87380 16777216
EOF
)"
  if [[ "${role}" == swarm ]]; then
    settings+=$'\n'"net.ipv4.ip_local_reserved_ports = ${base_port}-${last_port}"
  fi
  install_file "${SYSCTL_FILE}" "${settings}" && log "wrote ${SYSCTL_FILE}"
  sysctl -q -p "${SYSCTL_FILE}" >/dev/null || die "sysctl could not apply ${SYSCTL_FILE}"
  verify_sysctl "${settings}"
}

verify_sysctl() {
  local key value actual failed=0
  while IFS='=' read -r key value; do
    [[ -z "${key}" || "${key}" == \#* ]] && continue
    key="$(xargs <<<"${key}")"
    value="$(xargs <<<"${value}")"
    actual="$(sysctl -n "${key}" | xargs)" || actual="<unreadable>"
    if [[ "${actual}" != "${value}" ]]; then
      log "ERROR: ${key} is '${actual}', wanted '${value}'"
      failed=1
    fi
  done <<<"$1"
  ((failed == 0)) || die "kernel tuning did not take effect"
  log "kernel tuning verified"
}

limit_units() {
  local changed=0
  install_file "${AGENTS_DROPIN}" "$(printf '[Service]\nTasksMax=infinity\nLimitNOFILE=%s\n' "${AGENT_NOFILE}")" &&
    changed=1
  # Operators' shells (and anything they start by hand) get the same room; logind is left running.
  install_file "${USER_SLICE_DROPIN}" "$(printf '[Slice]\nTasksMax=infinity\n')" && changed=1
  if ((changed)); then
    systemctl daemon-reload || die "systemctl daemon-reload failed"
    log "unit limits installed"
  fi
}

main() {
  mkdir -p "${STATE_DIR}" "${RUN_DIR}"
  exec 9>"${RUN_DIR}/startup.lock"
  flock 9

  local boot_id marker
  boot_id="$(<"${BOOT_ID_FILE}")"
  marker="${RUN_DIR}/startup-done.${boot_id}"
  if [[ -e "${marker}" ]]; then
    log "already ran this boot (${marker}); nothing to do"
    return 0
  fi

  read_attributes
  log "role=${role}${target:+ target=${target} ports=${base_port}-${last_port}}"
  report_script_keys
  tune_kernel
  limit_units
  touch "${marker}"
  log "boot path done for role ${role}"
}

role="" target="" base_port="" last_port=""
main "$@"
