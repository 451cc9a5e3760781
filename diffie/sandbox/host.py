"""The hypervisor host: is hardware KVM usable, and are virtlogd/libvirtd running?

Standard library only, so ``scripts/setup-vm-host.sh`` can run it with the system Python
(``PYTHONPATH=<repo> python3 -m diffie.sandbox.host up``) before any virtualenv exists.

KVM is decided by testing, not by the node's existence: ``/dev/kvm`` must open read-write, the
CPU must advertise vmx/svm, and QEMU must run a 512-byte boot sector under ``-accel kvm -cpu host``
that prints a marker on its serial port. (On these development machines ``/dev/kvm`` is a nested
"PVM" that passes the first test and fails the other two.)

Where KVM is unusable but ``/dev/kvm`` exists, libvirtd re-probes QEMU's capabilities on every
call (~70 s per restore). We then start libvirtd in a private mount namespace whose ``/dev`` has
no kvm node (VM_NOTES.md).

``up`` also confines QEMU (``confine.py``): qemu.conf's unprivileged user (libvirtd restarted if
that changed), root's pre-confinement image cache moved out of /root, the cache's modes; then it
prints what holds (``confinement`` prints only that).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from diffie.sandbox import confine

LIBVIRTD_PIDFILE = Path("/run/libvirtd.pid")
VIRTLOGD_PIDFILE = Path("/run/virtlogd.pid")
_MARKER = b"DIFFIE-KVM-OK"


def _log(msg: str) -> None:
    print(f"[vm-host] {msg}", file=sys.stderr, flush=True)


# --- KVM ---------------------------------------------------------------------------------------

def _boot_sector() -> bytes:
    """Real-mode code: write the marker to COM1, then halt forever."""
    text = _MARKER + b"\n\x00"
    code = bytes([
        0xBA, 0xF8, 0x03,          # mov dx, 0x3f8
        0xBE, 0x14, 0x7C,          # mov si, 0x7c14 (the text below)
        0xAC,                      # lodsb
        0x84, 0xC0,                # test al, al
        0x74, 0x03,                # jz +3
        0xEE,                      # out dx, al
        0xEB, 0xF8,                # jmp lodsb
        0xF4,                      # hlt
        0xEB, 0xFD,                # jmp hlt
    ])
    body = code.ljust(0x14, b"\x90") + text
    return body.ljust(510, b"\x00") + b"\x55\xaa"


def cpu_has_virt_flags(cpuinfo: str) -> bool:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            if flags & {"vmx", "svm"}:
                return True
    return False


def _qemu_kvm_probe(timeout_s: float = 15.0) -> bool:
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        return False
    with tempfile.TemporaryDirectory(prefix="diffie-kvm-") as tmp:
        img = Path(tmp) / "probe.img"
        img.write_bytes(_boot_sector())
        argv = [qemu, "-accel", "kvm", "-cpu", "host", "-machine", "pc", "-m", "16",
                "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
                "-drive", f"file={img},format=raw,if=floppy", "-boot", "a"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        out = b""
        deadline = time.monotonic() + timeout_s
        try:
            assert proc.stdout is not None
            os.set_blocking(proc.stdout.fileno(), False)
            while time.monotonic() < deadline and proc.poll() is None and _MARKER not in out:
                chunk = proc.stdout.read(256)
                if chunk:
                    out += chunk
                else:
                    time.sleep(0.05)
            if proc.stdout and _MARKER not in out:
                out += proc.stdout.read() or b""
        finally:
            proc.kill()
            proc.wait()
        return _MARKER in out


@functools.cache
def kvm_usable() -> bool:
    """True when hardware KVM works for a real guest (tested, cached per process)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    if not cpu_has_virt_flags(cpuinfo):
        return False
    return _qemu_kvm_probe()


def choose_domain_type(setting: str = "auto", *,
                       probe: Callable[[], bool] = kvm_usable) -> str:
    """``kvm`` or ``qemu`` (TCG). ``setting`` is Settings.vm_domain_type; auto asks ``probe``
    (does this host's KVM boot a guest?)."""
    if setting in ("kvm", "qemu"):
        return setting
    return "kvm" if probe() else "qemu"


# --- daemons -----------------------------------------------------------------------------------

def _pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def libvirtd_sees_kvm(pid: int) -> bool:
    """Does the running libvirtd see a /dev/kvm node (through its own mount namespace)?"""
    return Path(f"/proc/{pid}/root/dev/kvm").exists()


def libvirt_answers(uri: str, timeout_s: float = 10.0) -> bool:
    virsh = shutil.which("virsh")
    if not virsh:
        return False
    try:
        res = subprocess.run([virsh, "-c", uri, "version"], capture_output=True, timeout=timeout_s)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return res.returncode == 0


# Run by ``unshare -m``: a /dev with the usual nodes but no kvm, then libvirtd daemonises
# inside that namespace (and so do the QEMU processes it starts).
_NOKVM_DEV = r"""
set -eu
old=$(mktemp -d /run/diffie-olddev.XXXXXX)
mount --make-rprivate /
mount --rbind /dev "$old"
mount -t tmpfs -o mode=0755,nosuid,size=1m diffie-dev /dev
for n in null zero full random urandom tty ptmx; do
  if [ -L "$old/$n" ]; then cp -P "$old/$n" /dev/$n
  elif [ -e "$old/$n" ]; then touch /dev/$n; mount --bind "$old/$n" /dev/$n; fi
done
for d in pts shm net mqueue hugepages; do
  if [ -d "$old/$d" ]; then mkdir -p /dev/$d; mount --rbind "$old/$d" /dev/$d; fi
done
if [ -e "$old/log" ]; then cp -P "$old/log" /dev/log 2>/dev/null || true; fi
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
umount -l "$old"
rmdir "$old"
exec "$@"
"""


def _start(argv: list[str], *, hide_kvm: bool) -> None:
    if hide_kvm:
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _NOKVM_DEV,
                "diffie-nokvm", *argv]
    _log("starting: " + " ".join(argv[-2:]) + (" (private /dev without kvm)" if hide_kvm else ""))
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, timeout=60)


def _stop_libvirtd(pid: int) -> None:
    os.kill(pid, 15)
    for _ in range(100):
        if _pid_alive(LIBVIRTD_PIDFILE) is None:
            return
        time.sleep(0.1)


def ensure_daemons(uri: str = "qemu:///system", *, timeout_s: float = 60.0,
                   restart_trapped: bool = False, reload_config: bool = False) -> None:
    """Start virtlogd and libvirtd unless running; idempotent. Raises RuntimeError on failure.

    Where KVM is unusable, libvirtd starts without /dev/kvm in sight. A libvirtd that someone
    else started *with* /dev/kvm in sight is reported (slow restores); with ``restart_trapped``
    it is stopped (by its pidfile) and restarted the right way. ``reload_config`` restarts a
    running libvirtd (qemu.conf changed); running guests keep running meanwhile.
    """
    if not uri.startswith("qemu:///system"):
        return  # session or remote daemons are not ours to manage
    hide = Path("/dev/kvm").exists() and not kvm_usable()
    if _pid_alive(VIRTLOGD_PIDFILE) is None and shutil.which("virtlogd"):
        _start(["virtlogd", "-d"], hide_kvm=False)
    pid = _pid_alive(LIBVIRTD_PIDFILE)
    if pid is not None and hide and libvirtd_sees_kvm(pid):
        if not restart_trapped:
            _log(f"warning: libvirtd (pid {pid}) can see /dev/kvm although KVM is unusable; "
                 "restores will be very slow. Re-run with --restart-trapped to fix.")
        else:
            _log(f"restarting libvirtd (pid {pid}) without /dev/kvm in sight")
            _stop_libvirtd(pid)
            pid = None
    if pid is not None and reload_config:
        _log(f"restarting libvirtd (pid {pid}) to apply qemu.conf")
        _stop_libvirtd(pid)
        pid = None
    if pid is None:
        _start(["libvirtd", "-d"], hide_kvm=hide)
    deadline = time.monotonic() + timeout_s
    while not libvirt_answers(uri):
        if time.monotonic() > deadline:
            raise RuntimeError(f"libvirtd does not answer on {uri} after {timeout_s:.0f} s")
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffie.sandbox.host")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start virtlogd + libvirtd (idempotent)")
    up.add_argument("--uri", default=os.environ.get("DIFFIE_LIBVIRT_URI", "qemu:///system"))
    up.add_argument("--restart-trapped", action="store_true",
                    default=os.environ.get("DIFFIE_VM_RESTART_TRAPPED") == "1")
    sub.add_parser("domain-type", help="print kvm or qemu")
    conf = sub.add_parser("confinement", help="print what confines QEMU on this host")
    conf.add_argument("--uri", default=os.environ.get("DIFFIE_LIBVIRT_URI", "qemu:///system"))
    args = parser.parse_args(argv)
    dtype = choose_domain_type(os.environ.get("DIFFIE_VM_DOMAIN_TYPE", "auto"))
    if args.cmd == "domain-type":
        print(dtype)
        return 0
    if args.cmd == "confinement":
        for line in confine.inspect(args.uri, image_cache_dir(), dtype).lines():
            print(line)
        return 0
    system = args.uri.startswith("qemu:///system") and os.geteuid() == 0
    cache = image_cache_dir()
    try:
        changed = False
        if system:
            changed = confine.configure_qemu_conf()
            if not os.environ.get("DIFFIE_IMAGE_CACHE_DIR"):
                confine.migrate_legacy_cache(confine.legacy_image_cache_dir(), cache)
        ensure_daemons(args.uri, restart_trapped=args.restart_trapped, reload_config=changed)
        report = confine.inspect(args.uri, cache, dtype)
        if system:
            confine.prepare_cache(cache, report.qemu_gid)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        _log(f"error: {exc}")
        return 1
    _log(f"libvirt answers on {args.uri}; domain type {dtype}")
    for line in report.lines():
        _log(line)
    return 1 if report.cache_problem else 0


def image_cache_dir() -> Path:
    """DIFFIE_IMAGE_CACHE_DIR, else the default (``Settings.image_cache_dir`` says the same)."""
    env = os.environ.get("DIFFIE_IMAGE_CACHE_DIR")
    return Path(env).expanduser().absolute() if env else confine.default_image_cache_dir()


if __name__ == "__main__":
    sys.exit(main())
