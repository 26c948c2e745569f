# shellcheck shell=bash
# pilot-fleet startup script, last part: the boot path itself. Runs under the prologue's lock, once per boot (its
# marker, BOOT_MARKER, is written when everything succeeded).

main() {
  mkdir -p "${STATE_DIR}"
  unpack_supervisor
  read_attributes
  local reserved=""
  if [[ "${role}" == swarm ]]; then
    reserved="${attr[base_udp_port]}-$((attr[base_udp_port] + attr[target_agents] - 1))"
  fi
  log "role=${role}${reserved:+ target_agents=${attr[target_agents]} ports=${reserved}}"
  report_script_keys
  tune_kernel "${reserved}"
  "setup_${role}"
  setup_ops_agent
  touch "${BOOT_MARKER}"
  log "boot path done for role ${role}"
}

declare -A attr=()
# shellcheck disable=SC2034 # rendezvous_installed is rendezvous.sh's
role="" rendezvous_installed=0
main "$@"
