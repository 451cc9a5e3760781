#!/usr/bin/env bash
# Set up Diffie on a fresh Debian 12 machine: Debian packages, the virtualenv, the VM host.
# Idempotent: a second run only checks. Usage: scripts/bootstrap.sh [--no-vm]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[bootstrap] %s\n' "$*" >&2; }

want_vm=1
for arg in "$@"; do
  case "$arg" in
    --no-vm) want_vm=0 ;;
    *) echo "unknown option $arg (expected --no-vm)" >&2; exit 2 ;;
  esac
done

export DEBIAN_FRONTEND=noninteractive
# chromium: the browser; libvirt-dev + pkg-config + gcc: to build libvirt-python;
# cmark-gfm: GitHub's Markdown renderer, to test that PR comments link nothing (tests/unit/test_gfm.py).
pkgs=(chromium fonts-dejavu-core fonts-liberation git ca-certificates curl python3-venv
      libvirt-dev pkg-config gcc python3-dev cmark-gfm socat)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -q >&2
  apt-get install -y -q "${missing[@]}" >&2
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.diffie-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing Python packages into .venv"
  .venv/bin/pip install -q -U pip wheel setuptools >&2
  .venv/bin/pip install -q -e '.[dev]' >&2
  touch "$stamp"
fi

if [ "$want_vm" = 1 ]; then
  scripts/setup-vm-host.sh
fi
log "ready"
