#!/bin/bash
# pilot-fleet project-level startup script: the ONE boot script of every fleet VM, rendered by the Pulumi program
# into the project metadata item `startup-script`. Compute Engine runs it as root on every boot. The renderer
# (fleet/startup_render.py) joins this common part (the guarded prologue first), swarm.sh,
# rendezvous.sh and main.sh, and embeds the VM contract (JSON) and the supervisor package (a zipapp).
#
# What it does, in order, and why (figures in docs/pilot-facts.md):
#   1. one run at a time (flock) and at most once per boot (a marker keyed on the kernel's boot id): a second
#      run must never start a second fleet;
#   2. reads and checks every `pilot-*` instance attribute before touching anything, with the zipapp's checker
#      (the VM contract's forms and bounds; the same code checks a swarm host's live changes);
#   3. reports loudly if instance-level script keys exist (they bypass or double this script);
#   4. kernel tuning as a sysctl drop-in (the contract's figures), applied, then read back and verified: PIDs,
#      file descriptors, socket buffers, and the agents' UDP ports reserved out of the ephemeral range;
#   5. limits on the unit that owns the agents (TasksMax, LimitNOFILE) and on operators' shells (user-.slice);
#      never a restart of systemd-logind (it can kill SSH sessions);
#   6. the role's own part: swarm.sh (the supervisor and its unit) or rendezvous.sh (store disk, binary, unit).
#
# Test seams, honoured only when set: PILOT_ROOT prefixes every path written, PILOT_METADATA_URL replaces the
# metadata server, PILOT_SECRET_MANAGER_URL Secret Manager's API, PILOT_BOOT_ID_FILE replaces /proc/sys/kernel/random/boot_id, PILOT_DOWNLOAD_MIRROR serves every
# download (https://HOST/PATH is fetched as $PILOT_DOWNLOAD_MIRROR/HOST/PATH, checked the same way), PILOT_DAEMON_BIN
# is the binary the supervisor starts instead of the installed pilot-daemon; sysctl, systemctl, blkid, mkfs.ext4,
# mount and mountpoint are found on PATH.
set -euo pipefail
# @prologue: one run at a time, at most once per boot. It runs first and unconditionally, so nothing (an early exit,
# a condition, a heredoc) can skip it; the policy pack's startup-script-guarded checks these lines, in this order.
PILOT_ROOT="${PILOT_ROOT:-}"
RUN_DIR="${PILOT_ROOT}/run/pilot-fleet"
mkdir -p "${RUN_DIR}"
exec 9>"${RUN_DIR}/startup.lock"
flock 9
BOOT_MARKER="${RUN_DIR}/startup-done.$(<"${PILOT_BOOT_ID_FILE:-/proc/sys/kernel/random/boot_id}")"
if [[ -e "${BOOT_MARKER}" ]]; then
  printf 'pilot-fleet startup: already ran this boot (%s); nothing to do\n' "${BOOT_MARKER}" >&2
  exit 0
fi
# @prologue end

# The link-local address needs no DNS this early in boot.
METADATA_URL="${PILOT_METADATA_URL:-http://169.254.169.254/computeMetadata/v1}"
# shellcheck disable=SC2034 # the rendezvous part's (its key is a secret there)
SECRET_MANAGER_URL="${PILOT_SECRET_MANAGER_URL:-https://secretmanager.googleapis.com/v1}"
# shellcheck disable=SC2034 # STATE_DIR and INSTALL_DIR are the role parts' (swarm.sh, rendezvous.sh)
STATE_DIR="${PILOT_ROOT}/var/lib/pilot-fleet"
SYSCTL_FILE="${PILOT_ROOT}/etc/sysctl.d/60-pilot-fleet.conf"
UNIT_DIR="${PILOT_ROOT}/etc/systemd/system"
USER_SLICE_DROPIN="${UNIT_DIR}/user-.slice.d/50-pilot-fleet.conf"
# shellcheck disable=SC2034
INSTALL_DIR="${PILOT_ROOT}/opt/pilot-fleet"
# where both roles keep the supervisor zipapp and its contract.json for their units
# shellcheck disable=SC2034
SUPERVISOR_LIB="${INSTALL_DIR}/lib"
# The fleet's own system users (the VM contract's agent_user, rendezvous_user, build_user) exist on every VM; nothing
# of the fleet that runs for long or handles the network runs as root. Test seam: a sandbox on a test machine sets
# PILOT_SYSTEM_USERS=0 and creates no user there (the system-container boot test creates and checks them).
SYSTEM_USERS="${PILOT_SYSTEM_USERS:-1}"
# the supervisor zipapp, unpacked for this boot (the swarm role installs it under INSTALL_DIR for its unit)
BOOT_ZIPAPP="${RUN_DIR}/pilot-supervisor.pyz"

log() { printf 'pilot-fleet startup: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Best effort: guest attributes are for operators' eyes (at most 10 writes a minute per VM).
guest_attribute() {
  curl -fsS --max-time 5 -X PUT -H 'Metadata-Flavor: Google' --data "$2" \
    "${METADATA_URL}/instance/guest-attributes/pilot/$1" >/dev/null 2>&1 || log "could not publish guest attribute $1"
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

# Copy FILE over PATH atomically (byte for byte); returns 1 when PATH already holds the same bytes.
install_copy() {
  local file="$1" path="$2"
  if cmp -s "${file}" "${path}"; then
    return 1
  fi
  mkdir -p "$(dirname "${path}")"
  install -m 0644 "${file}" "${path}.new"
  mv -f "${path}.new" "${path}"
}

# The VM contract (fleet/vm_contract.py, rendered as JSON): every key, form, bound, default and kernel setting the
# boot path and the supervisor use. The renderer fills it in.
vm_contract() {
  cat <<'PILOT_VM_CONTRACT'
# @vm-contract
PILOT_VM_CONTRACT
}

# The supervisor package (startup/pilot_supervisor/) as one zipapp, base64; the renderer fills it in.
supervisor_zipapp() {
  base64 -d <<'PILOT_SUPERVISOR_PYZ'
# @supervisor-zipapp
PILOT_SUPERVISOR_PYZ
}

# The zipapp and its contract.json for this boot's checks, in the run directory (root's, gone at the next boot).
unpack_supervisor() {
  supervisor_zipapp >"${BOOT_ZIPAPP}.tmp" || die "could not unpack the supervisor zipapp"
  mv -f "${BOOT_ZIPAPP}.tmp" "${BOOT_ZIPAPP}"
  vm_contract >"${RUN_DIR}/contract.json" || die "could not write the VM contract"
}

# The zipapp's commands: attribute checks, script keys, kernel settings, downloads and wheels (one definition each).
pilot_supervisor() {
  python3 "${BOOT_ZIPAPP}" "$@"
}

# Download URL to FILE (through PILOT_DOWNLOAD_MIRROR in tests); the caller checks what arrives.
download() {
  pilot_supervisor download "$1" "$2" || die "could not download $1"
}

# Download URL to FILE and check its sha256; a mismatching download is deleted.
fetch_checked() {
  pilot_supervisor fetch "$1" "$2" "$3" || die "could not fetch $1 with sha256 $2 (above)"
}

# Every attribute of this VM's role, checked against the VM contract, into `attr` (field -> value). A refusal is one
# line naming the attribute and the reason, before anything is written.
read_attributes() {
  local lines name value refusal="${RUN_DIR}/attributes-refused"
  if ! lines="$(pilot_supervisor attributes --metadata-url "${METADATA_URL}" 2>"${refusal}")"; then
    die "$(sed 's/^pilot-supervisor: //' "${refusal}")"
  fi
  while IFS='=' read -r name value; do
    attr["${name}"]="${value}"
  done <<<"${lines}"
  role="${attr[role]}"
}

report_script_keys() {
  local ghosts
  ghosts="$(pilot_supervisor script-keys --metadata-url "${METADATA_URL}")" ||
    { log "could not list instance attributes"; return 0; }
  if [[ -n "${ghosts}" ]]; then
    log "WARNING: instance-level script keys present: ${ghosts} - they bypass or double this project-level script"
    guest_attribute bypassed-startup-script "${ghosts}"
  fi
}

# Kernel settings from the VM contract (a swarm VM also reserves its agents' ports), applied and read back.
tune_kernel() {
  local settings
  settings="$(pilot_supervisor sysctl --reserved-ports "${1:-}")" || die "no kernel settings from the contract"
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

# Operators' shells (and anything they start by hand) get room too; logind is left running. Returns 0 when the
# drop-in changed (the caller reloads systemd once for everything).
limit_user_slice() {
  install_file "${USER_SLICE_DROPIN}" "$(printf '[Slice]\nTasksMax=infinity\n')"
}

# The system user NAME (a group of its own, no home, no login), created once.
ensure_user() {
  local name="$1"
  ((SYSTEM_USERS)) || return 0
  getent passwd "${name}" >/dev/null && return 0
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "${name}" ||
    die "could not create the system user ${name}"
  log "created the system user ${name}"
}

# Run a command as the system user NAME: no supplementary groups, no capabilities, no way back to privilege.
as_user() {
  local name="$1"
  shift
  if ((SYSTEM_USERS)); then
    setpriv --reuid="${name}" --regid="${name}" --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs \
      -- "$@"
  else
    "$@"
  fi
}

# NAME owns PATH (a directory it alone writes).
give_to_user() {
  ((SYSTEM_USERS)) || return 0
  chown "$1:$1" "$2" || die "could not give $2 to $1"
}

# The systemd sandbox both units run in; WRITABLE: the only paths they may write (ProtectSystem=strict).
unit_sandbox() {
  cat <<EOF2
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=$*
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
UMask=0077
EOF2
}

# Start UNIT, or restart it when its configuration changed while it ran (CHANGED=1).
start_unit() {
  local unit="$1" changed="$2"
  systemctl enable --quiet "${unit}" || die "systemctl enable ${unit} failed"
  if ((changed)) && systemctl is-active --quiet "${unit}"; then
    systemctl restart "${unit}" || die "systemctl restart ${unit} failed"
    log "restarted ${unit}: its configuration changed"
  else
    systemctl start "${unit}" || die "systemctl start ${unit} failed"
    log "${unit} started"
  fi
}

# Mount the persistent disk attached as DEVICE_NAME on MOUNT_POINT (with the extra mount OPTIONS), formatting it on
# first use only (an empty disk has no file system; one that has one is never formatted again). The registry's
# -store and a swarm VM's agent state live on such disks, so they outlive the VM and its boot disk.
mount_disk() {
  local name="$1" mount_point="$2" what="$3" options="${4:-}" device
  device="${PILOT_ROOT}/dev/disk/by-id/google-${name}"
  mkdir -p "${mount_point}"
  if mountpoint -q "${mount_point}"; then
    return 0
  fi
  [[ -e "${device}" ]] || die "${what} disk ${device} is not attached"
  if ! blkid "${device}" >/dev/null 2>&1; then
    log "formatting the empty ${what} disk ${device}"
    mkfs.ext4 -q -L "${name:0:16}" "${device}" || die "mkfs.ext4 ${device} failed"
  fi
  mount -o "discard,defaults${options:+,${options}}" "${device}" "${mount_point}" ||
    die "could not mount ${device} on ${mount_point}"
  log "${what} disk mounted on ${mount_point}"
}

# Google's Ops Agent, when the stack asks for it (monitoring.opsAgentVersion; README "Monitoring"): that release
# installed through Google's repository script (which adds Google's signed apt repository; the package is checked by
# apt), then the fleet's receiver as its config (fleet/monitoring/ops_agent.py), the agent restarted only when the
# config changed. Monitoring never fails the boot path, which has already started the VM's own services: a failure
# is a warning and a guest attribute, and the next boot tries again. Without the attributes the agent is left alone;
# one without the other is refused with every attribute, before anything is written (read_attributes).
OPS_AGENT_CONFIG="${PILOT_ROOT}/etc/google-cloud-ops-agent/config.yaml"
OPS_AGENT_UNIT="google-cloud-ops-agent.service"

setup_ops_agent() {
  local want="${attr[ops_agent_version]}" have installer="${RUN_DIR}/add-google-cloud-ops-agent-repo.sh"
  [[ -n "${want}" ]] || return 0
  have="$(dpkg-query -W -f='${Version}' google-cloud-ops-agent 2>/dev/null || true)"
  if [[ "${have%%~*}" != "${want}" ]]; then # the package's version is VERSION~DISTRIBUTION
    log "installing the Ops Agent ${want} (installed: ${have:-none})"
    if ! pilot_supervisor download "$(pilot_supervisor contract ops_agent_repo_script)" "${installer}" ||
      ! bash "${installer}" --also-install --version="${want}"; then
      log "WARNING: the Ops Agent ${want} could not be installed (above); the next boot tries again"
      guest_attribute ops-agent "not installed: ${want}"
      return 0
    fi
  fi
  if install_file "${OPS_AGENT_CONFIG}" "${attr[ops_agent_config]}"; then
    if ! systemctl restart "${OPS_AGENT_UNIT}"; then
      log "WARNING: ${OPS_AGENT_UNIT} did not restart with the fleet's receiver"
      guest_attribute ops-agent "not restarted: ${want}"
      return 0
    fi
    log "Ops Agent ${want}: the fleet's receiver written to ${OPS_AGENT_CONFIG}, agent restarted"
  fi
  guest_attribute ops-agent "${want}"
}
