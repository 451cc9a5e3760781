#!/usr/bin/env bash
# Prepare this machine to run Diffie's VMs: QEMU + libvirt from Debian's packages, then
# virtlogd and libvirtd running (no systemd needed). Where /dev/kvm exists but hardware KVM is
# unusable (nested "PVM" on the dev/CI machines), libvirtd is started in a private mount
# namespace without /dev/kvm, or it re-probes QEMU on every call (VM_NOTES.md).
# QEMU runs as the unprivileged libvirt-qemu user (qemu.conf), the image cache defaults to
# /var/lib/diffie/images and is made traversable for it; the last lines say what confines QEMU
# on this host (docs/vm-confinement.md).
# Idempotent: a second run only checks. Usage: scripts/setup-vm-host.sh [--restart-trapped]
#   --restart-trapped   restart a libvirtd that was started elsewhere and can see /dev/kvm
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[vm-host] %s\n' "$*" >&2; }

extra=()
for arg in "$@"; do
  case "$arg" in
    --restart-trapped) extra+=(--restart-trapped) ;;
    *) echo "unknown option $arg (expected --restart-trapped)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  log "must run as root (installs packages, starts libvirtd for qemu:///system)"; exit 1
fi

export DEBIAN_FRONTEND=noninteractive
pkgs=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
      debootstrap e2fsprogs util-linux python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -q >&2
  # policy-rc.d keeps the packages' init scripts from starting libvirtd the wrong way.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; created_policy=1
  fi
  trap 'if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi' EXIT
  apt-get install -y -q "${pkgs[@]}" >&2
fi

# qemu.conf, image cache, virtlogd + libvirtd (idempotent); the KVM test, the namespace and the
# confinement live in host.py and confine.py.
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" python3 -m diffie.sandbox.host up "${extra[@]}"
