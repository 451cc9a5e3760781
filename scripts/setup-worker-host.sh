#!/usr/bin/env bash
# Make this machine a Diffie worker host: Debian packages, libvirt (scripts/setup-vm-host.sh),
# the virtualenv (scripts/bootstrap.sh), /etc/diffie/worker.env (kept when it exists), the
# diffie-worker systemd unit (enabled and started when systemd runs this machine), and
# optionally a golden image. Idempotent: a second run only checks and refreshes the unit.
#
#   sudo scripts/setup-worker-host.sh [--image NAME] [--no-start] [--root DIR] [--no-packages]
#     --image NAME    build (or reuse) the image NAME (vm_images/NAME) for this host's slots
#     --no-start      write and enable the unit, do not start it
#     --root DIR      write /etc files under DIR instead of / (tests, image builds)
#     --no-packages   skip packages, libvirt and the virtualenv (they are there already)
# Then fill in /etc/diffie/worker.env (the shared database, broker and artifact store) and
# `systemctl restart diffie-worker`; `diffie status` on any host shows the worker (docs/operations.md).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[worker-host] %s\n' "$*" >&2; }

image="" start=1 root="" packages=1
while [ $# -gt 0 ]; do
  case "$1" in
    --image) image=${2:?--image needs a name}; shift ;;
    --no-start) start=0 ;;
    --root) root=${2:?--root needs a directory}; shift ;;
    --no-packages) packages=0 ;;
    *) echo "unknown option $1 (expected --image NAME, --no-start, --root DIR, --no-packages)" >&2
       exit 2 ;;
  esac
  shift
done

if [ "$packages" = 1 ]; then
  [ "$(id -u)" = 0 ] || { log "must run as root (packages, libvirt, the systemd unit)"; exit 1; }
  "$repo/scripts/bootstrap.sh"          # Debian packages, .venv, then setup-vm-host.sh
fi

etc="$root/etc/diffie"
unit_dir="$root/etc/systemd/system"
mkdir -p "$etc" "$unit_dir"
env_file="$etc/worker.env"
if [ ! -f "$env_file" ]; then
  log "writing $env_file (fill in the shared services before starting the worker)"
  umask 077
  cat > "$env_file" <<ENV
# Diffie worker host settings (see README.md "Configuration" and docs/operations.md).
# Every host of a deployment shares these three:
DIFFIE_DATABASE_URL=postgresql+psycopg://diffie:PASSWORD@db.example.internal:5432/diffie
DIFFIE_BROKER_URL=redis://redis.example.internal:6379/0
DIFFIE_URL_SIGNING_KEY=
# API and workers on different hosts: an S3-compatible store for run files
DIFFIE_ARTIFACT_STORE=
DIFFIE_S3_ENDPOINT_URL=
AWS_ACCESS_KEY_ID=
AWS_SECRET_ACCESS_KEY=
# This host
DIFFIE_DATA_DIR=/var/lib/diffie/data
DIFFIE_IMAGE_CACHE_DIR=/var/lib/diffie/images
DIFFIE_VM_SLOTS=2
DIFFIE_LOG_FORMAT=json
DIFFIE_PUBLIC_URL=https://diffie.example.com
ENV
else
  log "keeping $env_file"
fi

unit="$unit_dir/diffie-worker.service"
sed "s|@REPO@|$repo|g" "$repo/deploy/systemd/diffie-worker.service" > "$unit.new"
if [ -f "$unit" ] && cmp -s "$unit" "$unit.new"; then
  rm -f "$unit.new"; log "unit $unit is up to date"
else
  mv "$unit.new" "$unit"; log "wrote $unit"
fi

if [ -n "$image" ]; then
  log "building (or reusing) image $image"
  set -a; . "$env_file"; set +a
  "$repo/.venv/bin/diffie" image build "$image" >&2
fi

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable diffie-worker.service >&2
  if [ "$start" = 1 ]; then
    systemctl restart diffie-worker.service
    log "diffie-worker started: journalctl -u diffie-worker -f; diffie status shows it"
  fi
elif [ -z "$root" ]; then
  log "systemd is not running this machine: start the worker yourself, e.g."
  log "  set -a; . $env_file; set +a; $repo/.venv/bin/diffie worker --pool solo"
fi
log "worker host ready"
