#!/bin/bash
# pilot-fleet project-level startup script (rendered into the one `startup-script` project metadata item).
#
# STAND-IN: this is the minimal boot path that issue 3 replaces with kernel/limit tuning, the binary install
# and the agent supervisor. What it already does is what every later version keeps: read the role from the
# instance's `pilot-*` attributes, refuse unknown roles, and run at most once per boot under a lock.
set -euo pipefail

PILOT_ROOT="${PILOT_ROOT:-}"
METADATA_URL="${PILOT_METADATA_URL:-http://metadata.google.internal/computeMetadata/v1}"
STATE_DIR="${PILOT_ROOT}/var/lib/pilot-fleet"
RUN_DIR="${PILOT_ROOT}/run/pilot-fleet"

log() { printf 'pilot-fleet startup: %s\n' "$*" >&2; }

attribute() {
  curl -fsS --retry 5 --retry-connrefused --max-time 10 -H 'Metadata-Flavor: Google' \
    "${METADATA_URL}/instance/attributes/$1"
}

mkdir -p "${STATE_DIR}" "${RUN_DIR}"
exec 9>"${RUN_DIR}/startup.lock"
flock 9

boot_id="$(cat "${PILOT_BOOT_ID_FILE:-/proc/sys/kernel/random/boot_id}")"
marker="${RUN_DIR}/startup-done.${boot_id}"
if [[ -e "${marker}" ]]; then
  log "already ran this boot (${marker}); nothing to do"
  exit 0
fi

role="$(attribute pilot-role)" || { log "instance attribute pilot-role is missing"; exit 1; }
case "${role}" in
  rendezvous | swarm) log "role=${role}" ;;
  *) log "unknown pilot-role '${role}' (expected rendezvous or swarm)"; exit 1 ;;
esac

touch "${marker}"
log "stand-in boot path done for role ${role}"
