"""QEMU confinement on this host: which user QEMU runs as, whether AppArmor labels it, and whether
that user can reach the files it needs (images, snapshots, per-lease overlays).

Standard library only: ``scripts/setup-vm-host.sh`` runs it (through ``host.py``) with the
system Python before any virtualenv exists.

What we rely on (VM_NOTES.md, docs/vm-confinement.md):

- libvirt's ``qemu.conf`` says ``user``/``group`` = ``libvirt-qemu`` and ``dynamic_ownership = 1``:
  QEMU runs unprivileged and libvirt chowns the lease's overlay, the kernel and the initrd to
  that user while the domain runs (and back to root afterwards: ``remember_owner``). The domain
  carries no ``<seclabel>`` of its own, except ``relabel='no'`` on the golden backing layers.
- Golden disks (``base.qcow2``, ``slots/*.qcow2``) are ``root:libvirt-qemu 0640``: every QEMU
  reads them, none can write them. Memory snapshots (``*.save``) are ``0600`` root: libvirt
  reads them and streams them to QEMU.
- Everything QEMU opens lives under the image cache (overlays in ``<cache>/.leases``), whose
  directories are ``0711`` root: QEMU can traverse them but not list them; the files it writes
  are ``0600``, so only libvirt's relabelling gives QEMU access to them.
- AppArmor (sVirt) is used by libvirt by itself where the kernel has it and libvirtd runs under
  its profile; we detect and report it, we do not install it.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
QEMU_USER = "libvirt-qemu"
QEMU_GROUP = "libvirt-qemu"
SYSTEM_CACHE = Path("/var/lib/diffie/images")
LEASES = ".leases"
PACKAGES = ".packages"          # the package proxy's cache (package_proxy.py)
DIR_MODE = 0o711      # traversable by QEMU, not listable
FILE_MODE = 0o600     # readable by QEMU only while libvirt has chowned it
GOLDEN_MODE = 0o640   # golden disks, root:<QEMU's group>: read-only for QEMU
APPARMOR_ENABLED = Path("/sys/module/apparmor/parameters/enabled")


def _log(msg: str) -> None:
    print(f"[vm-host] {msg}", file=sys.stderr, flush=True)


def default_image_cache_dir() -> Path:
    """``/var/lib/diffie/images`` for root (QEMU cannot traverse ``/root``), else
    ``~/.cache/diffie/images`` (a user's qemu:///session QEMU runs as that user)."""
    if os.geteuid() == 0:
        return SYSTEM_CACHE
    return Path.home() / ".cache" / "diffie" / "images"


def legacy_image_cache_dir() -> Path:
    """Where root's images were cached before QEMU ran unprivileged."""
    return Path(pwd.getpwuid(0).pw_dir) / ".cache" / "diffie" / "images"


# --- qemu.conf -----------------------------------------------------------------------------

def wanted_conf() -> dict[str, str]:
    return {"user": f'"{QEMU_USER}"', "group": f'"{QEMU_GROUP}"', "dynamic_ownership": "1",
            "remember_owner": "1"}


def set_conf_values(text: str, values: dict[str, str]) -> str:
    """``text`` (a libvirt .conf) with ``key = value`` for each of ``values``: an uncommented
    setting is replaced in place (libvirt reads the first one), a missing one is appended."""
    lines = text.splitlines()
    missing = dict(values)
    for i, line in enumerate(lines):
        m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if m and m.group(1) in values:
            key = m.group(1)
            if key in missing:
                lines[i] = f"{key} = {values[key]}"
                del missing[key]
            else:
                lines[i] = "# " + line + "   # duplicate, disabled by Diffie"
    if missing:
        lines.append("")
        lines.append("# Diffie: QEMU runs unprivileged, libvirt relabels its files (setup-vm-host.sh)")
        lines.extend(f"{k} = {v}" for k, v in missing.items())
    return "\n".join(lines) + "\n"


def configure_qemu_conf(path: Path = QEMU_CONF) -> bool:
    """Make libvirt run QEMU as ``libvirt-qemu`` with dynamic ownership. True if the file changed
    (libvirtd must then be restarted). Leaves the file alone where that user does not exist."""
    try:
        pwd.getpwnam(QEMU_USER)
        grp.getgrnam(QEMU_GROUP)
    except KeyError:
        _log(f"no {QEMU_USER} user/group on this host: QEMU keeps libvirt's configured user")
        return False
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = ""
    new = set_conf_values(text, wanted_conf())
    if new == text:
        return False
    tmp = path.with_name(f".{path.name}.diffie")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # may hold passwords
    with os.fdopen(fd, "w") as fh:
        fh.write(new)
    if path.exists():
        shutil.copymode(path, tmp)
    os.replace(tmp, path)
    _log(f"{path}: user/group {QEMU_USER}, dynamic_ownership = 1, remember_owner = 1")
    return True


# --- who can reach what ----------------------------------------------------------------------

def parse_label(label: str) -> tuple[int, int] | None:
    """libvirt's DAC label ``+64055:+64055`` (or ``user:group``) → (uid, gid)."""
    try:
        user, group = label.split(":", 1)
        uid = int(user[1:]) if user.startswith("+") else pwd.getpwnam(user).pw_uid
        gid = int(group[1:]) if group.startswith("+") else grp.getgrnam(group).gr_gid
    except (ValueError, KeyError):
        return None
    return uid, gid


def qemu_label(capabilities_xml: str, domain_type: str = "qemu") -> tuple[int, int] | None:
    """The (uid, gid) QEMU runs as, from the DAC base label in libvirt's host capabilities."""
    try:
        root = ET.fromstring(capabilities_xml)
    except ET.ParseError:
        return None
    for model in root.iter("secmodel"):
        if model.findtext("model") != "dac":
            continue
        for base in model.findall("baselabel"):
            if base.get("type") == domain_type and base.text:
                return parse_label(base.text.strip())
    return None


def security_models(capabilities_xml: str) -> list[str]:
    try:
        root = ET.fromstring(capabilities_xml)
    except ET.ParseError:
        return []
    return [m.findtext("model") or "" for m in root.iter("secmodel")]


def groups_of(uid: int, gid: int) -> set[int]:
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return {gid}
    return {gid, *os.getgrouplist(name, gid)}


def _allowed(st: os.stat_result, uid: int, gids: set[int], bits: tuple[int, int, int]) -> bool:
    """Does ``uid`` (with ``gids``) have the owner/group/other permission ``bits`` on a file?"""
    if st.st_uid == uid:
        return bool(st.st_mode & bits[0])
    if st.st_gid in gids:
        return bool(st.st_mode & bits[1])
    return bool(st.st_mode & bits[2])


_SEARCH = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
_READ = (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)


def _describe(st: os.stat_result) -> str:
    return f"{stat.filemode(st.st_mode)} {user_name(st.st_uid)}:{group_name(st.st_gid)}"


def blocking_dir(path: Path, uid: int, gids: set[int]) -> tuple[Path, str] | None:
    """The first directory on the way to ``path`` that ``uid`` (with ``gids``) cannot search,
    with its mode and owner; None if every one can be traversed. Root passes everywhere."""
    if uid == 0:
        return None
    path = path.absolute()
    for d in [*reversed(path.parents), path]:
        try:
            st = d.stat()
        except FileNotFoundError:
            return None         # created later by us, under a parent that was checked
        if stat.S_ISDIR(st.st_mode) and not _allowed(st, uid, gids, _SEARCH):
            return d, _describe(st)
    return None


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def unreachable_message(path: Path, uid: int, gid: int, *, read: bool = False) -> str | None:
    """A clear error if QEMU (running as ``uid``:``gid``) cannot traverse to ``path`` (nor,
    with ``read``, read it without libvirt's relabelling: a read-only golden layer)."""
    gids = groups_of(uid, gid)
    who = user_name(uid)
    found = blocking_dir(path, uid, gids)
    if found is not None:
        d, mode = found
        return (f"QEMU runs as {who} and cannot reach {path}: {d} is {mode} (no search "
                f"permission). Set DIFFIE_IMAGE_CACHE_DIR to a directory {who} can traverse "
                f"(default for root: {SYSTEM_CACHE}) and run scripts/setup-vm-host.sh")
    if read and uid != 0:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if not _allowed(st, uid, gids, _READ):
            return (f"QEMU runs as {who} and cannot read the golden disk {path} ({_describe(st)}); "
                    "run scripts/setup-vm-host.sh (it gives golden disks to QEMU's group, read-only)")
    return None


# --- the cache on disk -----------------------------------------------------------------------

def make_dir(path: Path) -> None:
    """mkdir -p with DIR_MODE for the directories it creates (and for ``path`` itself)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        os.chmod(d, DIR_MODE)
    if os.stat(path).st_uid == os.geteuid():
        os.chmod(path, DIR_MODE)


def secure_golden(path: Path, qemu_gid: int | None) -> None:
    """A golden disk (``base.qcow2``, ``slots/*.qcow2``): QEMU only ever has it as a backing
    layer that libvirt does not relabel (``domain.py``), so it is ``root:<QEMU's group> 0640``:
    QEMU reads it, never writes it. Not root (qemu:///session): ``0600``, QEMU runs as us."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if os.geteuid() != 0 or qemu_gid is None:
        secure_file(path)
        return
    if (st.st_uid, st.st_gid) != (0, qemu_gid):
        os.chown(path, 0, qemu_gid)
    if stat.S_IMODE(st.st_mode) != GOLDEN_MODE:
        os.chmod(path, GOLDEN_MODE)


def secure_file(path: Path) -> None:
    """FILE_MODE on a file QEMU opens: nobody but its owner (root, or QEMU while libvirt has
    chowned it) may read it."""
    try:
        if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
            os.chmod(path, FILE_MODE)
    except (FileNotFoundError, PermissionError):
        pass


def secure_image(image_dir: Path, qemu_gid: int | None) -> None:
    """Owners and modes of one built image (idempotent; also fixes images built before QEMU ran
    unprivileged, and golden disks that libvirt once chowned to QEMU)."""
    if not image_dir.is_dir():
        return
    os.chmod(image_dir, DIR_MODE)
    secure_golden(image_dir / "base.qcow2", qemu_gid)
    for name in ("vmlinuz", "initrd.img"):       # relabelled by libvirt while a guest runs
        secure_file(image_dir / name)
    slots = image_dir / "slots"
    if slots.is_dir():
        os.chmod(slots, DIR_MODE)
        for f in slots.iterdir():
            if f.suffix == ".qcow2":
                secure_golden(f, qemu_gid)
            elif f.suffix == ".save":             # read by libvirt (root) at restore
                secure_file(f)
    logs = image_dir / "logs"
    if logs.is_dir():
        os.chmod(logs, 0o700)


def prepare_cache(cache: Path, qemu_gid: int | None) -> None:
    """The cache root, its ``.leases`` directory and every image in it: modes for QEMU."""
    make_dir(cache / LEASES)
    os.chmod(cache, DIR_MODE)
    trees = cache / ".trees"
    if trees.is_dir():
        os.chmod(trees, 0o700)          # debootstrap trees: nothing QEMU needs
    for entry in cache.iterdir():
        if entry.is_dir() and not entry.name.startswith("."):
            secure_image(entry, qemu_gid)


def migrate_legacy_cache(old: Path, new: Path) -> bool:
    """Move root's pre-confinement cache (under /root, which QEMU cannot traverse) to ``new``
    when ``new`` holds no image yet and both are on one filesystem; repoint the slot disks'
    backing files. False (and the old cache left alone: images get rebuilt) otherwise."""
    if not old.is_dir() or old.resolve() == new.resolve():
        return False
    if new.exists() and any(p for p in new.iterdir() if p.name != LEASES):
        return False
    make_dir(new.parent)
    if os.stat(old).st_dev != os.stat(new.parent).st_dev:
        _log(f"{old} is on another filesystem than {new}: not moved (images will be rebuilt)")
        return False
    if new.exists():
        shutil.rmtree(new)
    os.rename(old, new)
    for image in new.iterdir():
        base = image / "base.qcow2"
        if not base.is_file():
            continue
        for disk in sorted((image / "slots").glob("*.qcow2")):
            subprocess.run(["qemu-img", "rebase", "-u", "-F", "qcow2", "-b", str(base), str(disk)],
                           check=True, capture_output=True, timeout=60)
    _log(f"moved the image cache {old} → {new}")
    return True


# --- what holds on this host -------------------------------------------------------------------

def apparmor_kernel() -> bool:
    try:
        return APPARMOR_ENABLED.read_text().strip().upper().startswith("Y")
    except OSError:
        return False


def process_label(pid: int) -> str:
    """The LSM label of a process (``libvirt-<uuid> (enforce)``, ``unconfined``, or ``none``)."""
    for attr in (f"/proc/{pid}/attr/apparmor/current", f"/proc/{pid}/attr/current"):
        try:
            text = Path(attr).read_text().strip().strip("\x00")
        except OSError:
            continue
        if text:
            return text
    return "none"


def process_user(pid: int) -> str:
    """``ps -o user= -p PID`` (the effective user name of a process)."""
    res = subprocess.run(["ps", "-o", "user=", "-p", str(pid)], capture_output=True, text=True,
                         timeout=10)
    return res.stdout.strip()


@dataclass
class Confinement:
    """What confines QEMU on this host, as libvirt reports it."""

    qemu_uid: int | None
    qemu_gid: int | None
    models: list[str]
    apparmor_kernel: bool
    cache_dir: Path
    cache_problem: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def non_root(self) -> bool:
        return self.qemu_uid not in (None, 0)

    @property
    def apparmor(self) -> bool:
        return "apparmor" in self.models

    def lines(self) -> list[str]:
        user = "unknown" if self.qemu_uid is None else user_name(self.qemu_uid)
        group = "unknown" if self.qemu_gid is None else group_name(self.qemu_gid)
        out = [f"QEMU user: {user}:{group} ({'unprivileged' if self.non_root else 'ROOT'}; "
               "overlays relabelled by libvirt, golden disks read-only)",
               "AppArmor (sVirt): " + ("on (libvirt labels each domain)" if self.apparmor else
                                       "off: " + ("the kernel has it but libvirt does not use it "
                                                  "(libvirtd not under its profile?)"
                                                  if self.apparmor_kernel else
                                                  "the kernel has no AppArmor")),
               f"security drivers: {', '.join(self.models) or 'none'}",
               f"image cache: {self.cache_dir} "
               + ("(reachable by QEMU)" if self.cache_problem is None else f"PROBLEM: {self.cache_problem}"),
               "guest network: user-mode, restrict=on, only 127.0.0.1 host forwards (no route to "
               "the host or beyond)"]
        return out + self.notes


def inspect(uri: str, cache: Path, domain_type: str = "qemu") -> Confinement:
    """Ask libvirt (``virsh capabilities``) who QEMU runs as and which security drivers it uses."""
    caps = ""
    virsh = shutil.which("virsh")
    if virsh:
        res = subprocess.run([virsh, "-c", uri, "capabilities"], capture_output=True, text=True,
                             timeout=60)
        caps = res.stdout if res.returncode == 0 else ""
    label = qemu_label(caps, domain_type)
    problem = None
    if label is not None:
        problem = unreachable_message(cache, *label)
    return Confinement(qemu_uid=label[0] if label else None, qemu_gid=label[1] if label else None,
                       models=security_models(caps), apparmor_kernel=apparmor_kernel(),
                       cache_dir=cache, cache_problem=problem)
