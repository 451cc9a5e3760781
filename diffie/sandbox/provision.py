"""Turn a debootstrapped tree into a Diffie guest: files, units, network, seed and readiness.

Everything here edits the tree on the host (no VM). The two generated units are:

- ``diffie-seed.service``: first boot only; runs the recipe's ``seed`` commands (after the
  units in ``seed_after``, before the recipe's ``enable`` units).
- ``diffie-ready.service``: runs ``ready.command`` until it succeeds, then writes
  ``DIFFIE-READY uptime=<s>`` on the serial console (``DIFFIE-NOT-READY`` on timeout).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from diffie.errors import SandboxError
from diffie.sandbox.recipe import LoadedRecipe, file_mode, iter_source_files

READY_MARKER = "DIFFIE-READY"
NOT_READY_MARKER = "DIFFIE-NOT-READY"
SEED_FAILED_MARKER = "DIFFIE-SEED-FAILED"
GUEST_IP = "10.0.2.15"
# Units that only add noise (timers firing during a verification) or boot time.
ALWAYS_MASKED = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer",
    "serial-getty@ttyS0.service", "getty@tty1.service", "systemd-timesyncd.service",
)
CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}


def _inside(tree: Path, guest_path: str, *, resolve_last: bool = False) -> Path:
    """``guest_path`` in the image tree, resolved as the guest would (chroot semantics): a
    symlink in the tree, absolute or relative, never leads out of ``tree`` (a repository's
    recipe may have put it there). The last component is resolved only with ``resolve_last``
    (otherwise it is what gets written or replaced)."""
    root = tree.resolve()
    parts = [p for p in guest_path.split("/") if p not in ("", ".")]
    if resolve_last:
        parts.append(".")
    current = root
    hops = 0
    todo = list(parts[:-1])
    while todo:
        part = todo.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise SandboxError(f"{guest_path}: too many symlinks in the image tree")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = root
            todo[:0] = [p for p in target.split("/") if p not in ("", ".")]
            continue
        current = candidate
    if not parts or parts[-1] == ".":
        return current
    if parts[-1] == "..":
        raise SandboxError(f"{guest_path}: not a file path")
    return current / parts[-1]


def _write(tree: Path, guest_path: str, text: str, mode: int = 0o644) -> None:
    path = _inside(tree, guest_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()                 # write the file itself, never where a link points
    path.write_text(text)
    path.chmod(mode)


def copy_files(loaded: LoadedRecipe, tree: Path) -> None:
    for copy in loaded.recipe.files:
        src = (loaded.dir / copy.src).resolve()
        dest = _inside(tree, copy.dest)
        if src.is_dir():
            if dest.is_symlink() or dest.is_file():
                dest.unlink()
            elif dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            for rel, path in iter_source_files(src, copy.exclude):
                target = dest / str(rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target, follow_symlinks=False)
                if not target.is_symlink():
                    target.chmod(file_mode(path))
            for sub, _dirs, _files in os.walk(dest):
                os.chmod(sub, 0o755)
        else:
            if copy.dest.endswith("/"):
                dest = _inside(tree, copy.dest + src.name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_symlink():
                dest.unlink()
            shutil.copy2(src, dest)
            dest.chmod(int(copy.mode, 8) if copy.mode else file_mode(src))


def _script(commands: list[str]) -> str:
    """A shell script whose trace and output go straight to the serial console (the build log)."""
    body = "\n".join(commands)
    return f"#!/bin/sh\nexec >/dev/ttyS0 2>&1\nset -eux\n{body}\n"


def write_system_files(loaded: LoadedRecipe, tree: Path) -> None:
    r = loaded.recipe
    _write(tree, "/etc/hostname", f"{loaded.name}\n")
    _write(tree, "/etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{loaded.name}\n"
                               "::1\tlocalhost ip6-localhost ip6-loopback\n")
    _write(tree, "/etc/fstab", "/dev/vda\t/\text4\tdefaults,noatime\t0\t0\n")
    # Static address on the user-mode network: no DHCP client, nothing to renew after a restore.
    _write(tree, "/etc/network/interfaces",
           "auto lo\niface lo inet loopback\n\n"
           f"auto eth0\niface eth0 inet static\n    address {GUEST_IP}/24\n    gateway 10.0.2.2\n")
    _write(tree, "/etc/resolv.conf", "# no name service: the guest has no network beyond its host\n")
    _write(tree, "/usr/local/lib/diffie/seed.sh", _script(r.seed + ["mkdir -p /var/lib/diffie",
                                                                    "touch /var/lib/diffie/seeded"]),
           0o755)
    before = " ".join(r.enable)
    after = " ".join(r.seed_after)
    _write(tree, "/etc/systemd/system/diffie-seed.service", f"""[Unit]
Description=Diffie: seed data (first boot only)
ConditionPathExists=!/var/lib/diffie/seeded
Wants={after}
After={after}
Before={before}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/lib/diffie/seed.sh
ExecStopPost=/bin/sh -c '[ "$SERVICE_RESULT" = success ] || echo {SEED_FAILED_MARKER} > /dev/ttyS0'
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=1800

[Install]
WantedBy=multi-user.target
""")
    ready = shlex.quote(r.ready.command)
    _write(tree, "/usr/local/lib/diffie/ready.sh", f"""#!/bin/sh
deadline=$(( $(cut -d. -f1 /proc/uptime) + {int(r.ready.timeout_s)} ))
until sh -c {ready} >/dev/null 2>&1; do
  if [ "$(cut -d. -f1 /proc/uptime)" -ge "$deadline" ]; then
    printf '\\n{NOT_READY_MARKER}\\n' > /dev/ttyS0; exit 1
  fi
  sleep 0.5
done
printf '\\n{READY_MARKER} uptime=%s\\n' "$(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0
""", 0o755)
    _write(tree, "/etc/systemd/system/diffie-ready.service", f"""[Unit]
Description=Diffie: readiness check (marker on the serial console)
After=diffie-seed.service {before}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/lib/diffie/ready.sh
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
""")


def systemctl(tree: Path, *args: str) -> None:
    res = subprocess.run(["systemctl", f"--root={tree}", *args], capture_output=True, text=True,
                         timeout=120)
    if res.returncode != 0:
        raise SandboxError(f"systemctl {' '.join(args)} in the image failed: {res.stderr.strip()}")


def enable_units(loaded: LoadedRecipe, tree: Path) -> None:
    r = loaded.recipe
    masks = sorted(set(ALWAYS_MASKED) | set(r.mask))
    # 'systemctl --root' needs no running systemd; masking an absent unit is fine.
    for unit in masks:
        link = _inside(tree, f"/etc/systemd/system/{unit}")
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    systemctl(tree, "enable", "diffie-seed.service", "diffie-ready.service", *r.enable)


def run_in_chroot(tree: Path, command: str, log: Path, timeout_s: float = 1800) -> None:
    """Run a recipe ``run`` command in the tree (no /proc or /dev mounts: file edits only)."""
    with log.open("a") as out:
        out.write(f"\n$ chroot {command}\n")
        out.flush()
        res = subprocess.run(["chroot", str(tree), "/bin/sh", "-ec", command], stdout=out,
                             stderr=subprocess.STDOUT, env=CHROOT_ENV, timeout=timeout_s)
    if res.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise SandboxError(f"recipe command failed in the image tree ({res.returncode}): "
                           f"{command}\n{tail}")


def clean_tree(tree: Path) -> None:
    for sub in ("/var/cache/apt/archives", "/var/lib/apt/lists"):
        d = _inside(tree, sub, resolve_last=True)
        if d.is_dir():
            for entry in d.iterdir():
                if entry.is_file() and not entry.is_symlink() and entry.name not in ("lock",):
                    entry.unlink()
    _write(tree, "/etc/machine-id", "")   # systemd makes one at boot (same for every slot: fine)


def kernel_files(tree: Path) -> tuple[Path, Path]:
    boot = _inside(tree, "/boot", resolve_last=True)
    # regular files only: a symlink could name a file of the build host
    kernels = sorted(p for p in boot.glob("vmlinuz-*") if p.is_file() and not p.is_symlink())
    initrds = sorted(p for p in boot.glob("initrd.img-*") if p.is_file() and not p.is_symlink())
    if not kernels or not initrds:
        raise SandboxError(f"the image has no kernel/initrd in {boot} (is linux-image-amd64 installed?)")
    return kernels[-1], initrds[-1]


def provision(loaded: LoadedRecipe, tree: Path, log: Path) -> None:
    copy_files(loaded, tree)
    write_system_files(loaded, tree)
    for command in loaded.recipe.run:
        run_in_chroot(tree, command, log)
    enable_units(loaded, tree)
    clean_tree(tree)
    os.sync()
