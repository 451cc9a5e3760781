"""``diffie image build NAME``: build a recipe's golden disk and per-slot memory snapshots.

Public entry point: :func:`build_image` (the CLI calls it; so does ``python -m diffie.sandbox
build NAME``). Steps, each printed through ``progress``:

1. debootstrap (minbase + Diffie's base packages), then ``apt-get install`` of the recipe's
   packages in it (both layers cached);
2. provision the tree (files, units, network, seed + readiness units; ``provision.py``);
3. ``mkfs.ext4 -d`` → raw image → ``qemu-img convert`` → ``base.qcow2``;
4. per slot: overlay on the base, cold boot (direct kernel boot), wait for the readiness marker
   and the HTTP probe, run the warm-up, save the running machine's memory (``slots/``).

Images are content-addressed (``store.py``) and cached: a step whose output exists is skipped,
so a second build is a no-op and raising ``vm_slots`` only boots the missing slots. A file
lock serialises concurrent builds of one image.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from diffie.config import Settings
from diffie.errors import SandboxError
from diffie.sandbox import confine, provision
from diffie.sandbox import domain as dx
from diffie.sandbox.deploy import wait_ready
from diffie.sandbox.host import choose_domain_type, ensure_daemons
from diffie.sandbox.libvirt import Hypervisor, domain_active, qemu_img_overlay, wait_for_console
from diffie.sandbox.recipe import BASE_PACKAGES, BUILDER_VERSION, LoadedRecipe, load_recipe
from diffie.sandbox.slots import Holder, host_lock, try_host_lock
from diffie.sandbox.store import (
    ImageInfo,
    image_dir,
    last_used,
    read_image,
    read_meta,
    slot_key,
    write_meta,
)

Progress = Callable[[str], None]
# init_on_free=1: freed pages are zeroed, and zero pages cost nothing in the saved memory image
# (see _shrink_guest_memory).
KERNEL_ARGS = ("root=/dev/vda rw console=ttyS0 net.ifnames=0 biosdevname=0 mitigations=off "
               "init_on_free=1")
# Before the warm-up: drop the boot's page cache (zeroed on free, so the saved image only
# holds what the warm-up reads back) and compact memory.
SHRINK = "sync; echo 3 > /proc/sys/vm/drop_caches; echo 1 > /proc/sys/vm/compact_memory || true"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
TREE_VERSION = "4"     # of the debootstrap + apt step alone (its cache key)


def print_progress(line: str) -> None:
    print(f"[image] {line}", file=sys.stderr, flush=True)


def host_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The host's Debian mirror (deb822 ``URIs:`` of the main archive), else deb.debian.org."""
    try:
        text = sources.read_text()
    except OSError:
        return DEFAULT_MIRROR
    for stanza in text.split("\n\n"):
        uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
        suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
        if uris and suites and "security" not in uris.group(1) and "-security" not in suites.group(1):
            return uris.group(1)
    return DEFAULT_MIRROR


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_logged(argv: list[str], log: Path, progress: Progress, label: str,
                timeout_s: float, every_s: float = 15.0) -> None:
    """Run a command, appending its output to ``log``; a progress line every ``every_s``."""
    start = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", env={**os.environ, "DEBIAN_FRONTEND": "noninteractive",
                                                       "LC_ALL": "C.UTF-8"})
        assert proc.stdout is not None
        last_report = start
        last_line = ""
        for line in proc.stdout:
            out.write(line)
            if line.strip():
                last_line = line.strip()
            now = time.monotonic()
            if now - last_report > every_s:
                progress(f"{label}: {now - start:.0f} s … {last_line[:90]}")
                last_report = now
            if now - start > timeout_s:
                proc.kill()
        code = proc.wait()
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SandboxError(f"{label} failed (exit {code}); see {log}\n{tail}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tree_key(suite: str, packages: list[str]) -> str:
    return hashlib.sha256(f"{TREE_VERSION}\0{suite}\0{' '.join(packages)}".encode()).hexdigest()[:16]


def _cached_tree(trees: Path, key: str, make: Callable[[Path], None]) -> Path:
    """``trees/key``, made by ``make(tmp)`` once and renamed into place when complete."""
    done = trees / key
    if done.is_dir():
        return done
    trees.mkdir(parents=True, exist_ok=True)
    tmp = trees / f"{key}.tmp"
    _unmount_below(tmp)
    shutil.rmtree(tmp, ignore_errors=True)     # an interrupted step
    make(tmp)
    os.replace(tmp, done)
    return done


def _unmount_below(tree: Path) -> None:
    """Undo mounts a killed build left in a scratch tree (before it is removed)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = f"{tree.resolve()}/"
    for line in reversed(mounts):
        target = line.split()[1] if len(line.split()) > 1 else ""
        if target.startswith(prefix):
            subprocess.run(["umount", "-l", target], capture_output=True, timeout=60)


# Maintainer scripts must not start services on the build host (postgresql would).
POLICY_RC_D = "#!/bin/sh\nexit 101\n"


def _apt_install(tree: Path, packages: list[str], mirror: str, log: Path, progress: Progress) -> None:
    """``apt-get install`` the recipe's packages in a debootstrapped tree. debootstrap's own
    ``--include`` does not resolve virtual packages or alternatives (Debian's ``npm`` depends
    on ``node-cli-table3 | ...``); apt does, with the archive's keyring that debootstrap
    verified. Name service comes from the build host for the duration; nothing is started."""
    policy = tree / "usr/sbin/policy-rc.d"
    resolv = tree / "etc/resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    shutil.copyfile("/etc/resolv.conf", resolv)
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    proc_dir = tree / "proc"
    proc_dir.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(proc_dir)], check=True, timeout=60)
    try:
        apt = ["chroot", str(tree), "apt-get", "-q", "-y", "-o", "Acquire::Check-Valid-Until=false",
               "-o", "APT::Install-Recommends=false", "-o", "Dpkg::Options::=--force-confdef",
               "-o", "Dpkg::Options::=--force-confold"]
        progress(f"apt-get install {len(packages)} packages in the tree from {mirror}")
        _run_logged([*apt, "update"], log, progress, "apt-get update", 1800)
        _run_logged([*apt, "install", "--", *packages], log, progress, "apt-get install", 3600)
        _run_logged([*apt, "clean"], log, progress, "apt-get clean", 600)
    finally:
        subprocess.run(["umount", "-l", str(proc_dir)], capture_output=True, timeout=60)
        policy.unlink(missing_ok=True)
        resolv.unlink(missing_ok=True)


Runner = Callable[[list[str], Path, Progress, str, float], None]
AptInstall = Callable[[Path, list[str], str, Path, Progress], None]


def _debootstrap_cached(cache: Path, suite: str, packages: list[str], mirror: str, log: Path,
                        progress: Progress, *, run: Runner | None = None,
                        apt: AptInstall | None = None) -> Path:
    """A tree with Debian ``suite`` and ``packages`` installed, kept in ``<cache>/.trees`` so that
    a change of the app or the provisioning reuses it (the slow, network-bound step). Two
    cached layers: debootstrap of Diffie's base set (shared by every recipe of the suite),
    then the recipe's own packages installed with apt in a copy of it."""
    run_logged: Runner = run or _run_logged
    apt_install: AptInstall = apt or _apt_install
    trees = cache / ".trees"
    base = sorted(BASE_PACKAGES)
    extra = sorted(set(packages) - set(base))

    def bootstrap(tmp: Path) -> None:
        progress(f"debootstrap {suite} ({len(base)} packages) from {mirror}")
        run_logged(["debootstrap", "--variant=minbase", f"--include={','.join(base)}",
                    "--components=main", suite, str(tmp), mirror], log, progress, "debootstrap", 3600)

    base_key = _tree_key(suite, base)
    if (trees / base_key).is_dir():
        progress(f"debootstrap {suite}: cached base tree {base_key}")
    base_tree = _cached_tree(trees, base_key, bootstrap)
    if not extra:
        return base_tree

    def install(tmp: Path) -> None:
        run_logged(["cp", "-a", "--reflink=auto", str(base_tree), str(tmp)], log, progress, "cp", 1800)
        apt_install(tmp, extra, mirror, log, progress)

    key = _tree_key(suite, sorted(set(packages) | set(base)))
    if (trees / key).is_dir():
        progress(f"packages of the recipe: cached tree {key}")
    return _cached_tree(trees, key, install)


def _build_disk(loaded: LoadedRecipe, out: Path, progress: Progress) -> dict[str, float]:
    """Steps 1-3: the base disk, kernel and initrd in ``out``. Returns step timings."""
    r = loaded.recipe
    log = out / "logs" / "build.log"
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    tree = work / "rootfs"
    work.mkdir(parents=True)
    timings: dict[str, float] = {}
    mirror = r.mirror or host_mirror()
    packages = r.all_packages()
    t = time.monotonic()
    cached = _debootstrap_cached(out.parent, r.suite, packages, mirror, log, progress)
    progress("copying the debootstrapped tree")
    _run_logged(["cp", "-a", "--reflink=auto", str(cached), str(tree)], log, progress, "cp", 1800)
    timings["debootstrap_s"] = round(time.monotonic() - t, 1)
    progress(f"debootstrap done in {timings['debootstrap_s']} s; provisioning the tree")
    t = time.monotonic()
    provision.provision(loaded, tree, log)
    kernel, initrd = provision.kernel_files(tree)
    shutil.copy2(kernel, out / "vmlinuz")
    shutil.copy2(initrd, out / "initrd.img")
    timings["provision_s"] = round(time.monotonic() - t, 1)
    progress(f"mkfs.ext4 -d ({r.vm.disk_mib} MiB) and qemu-img convert")
    t = time.monotonic()
    raw = work / "root.img"
    _run_logged(["mkfs.ext4", "-q", "-F", "-L", "diffie-root", "-b", "4096", "-d", str(tree),
                 str(raw), f"{r.vm.disk_mib}M"], log, progress, "mkfs.ext4", 1800)
    tmp = out / "base.qcow2.tmp"
    _run_logged(["qemu-img", "convert", "-O", "qcow2", str(raw), str(tmp)], log, progress,
                "qemu-img convert", 1800)
    os.replace(tmp, out / "base.qcow2")
    timings["disk_s"] = round(time.monotonic() - t, 1)
    shutil.rmtree(work)
    return timings


BOOT_FILES = ("vmlinuz", "initrd.img")


def boot_file_digests(out: Path) -> dict[str, str]:
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in BOOT_FILES}


def check_boot_files(out: Path) -> None:
    """The kernel and initrd are as built. libvirt hands them to QEMU's user while any guest of
    the image runs (it has no per-file opt-out for them, unlike the golden disks), and only a
    cold boot reads them again: this is where a change would take effect, so refuse it here."""
    want = (read_meta(out) or {}).get("boot_files_sha256")
    if not isinstance(want, dict):
        return          # built before the digests were recorded
    for name, digest in boot_file_digests(out).items():
        if want.get(name) != digest:
            raise SandboxError(f"{out / name} changed since the image was built (sha256 "
                               f"{digest[:16]}…, built {str(want.get(name))[:16]}…); rebuild it "
                               f"with `diffie image build --force`")


@dataclass
class ColdBoot:
    dom: Any                      # the running libvirt domain
    forwards: list[tuple[int, int]]
    seconds: float                # start → readiness marker and HTTP probe (host wall time)
    guest_uptime_s: float | None


def cold_boot(hv: Hypervisor, loaded: LoadedRecipe, out: Path, ident: dx.Identity, dtype: str,
              disk: Path, console: Path, description: str) -> ColdBoot:
    """Boot the image's kernel on ``disk`` and wait until it is ready (marker + HTTP probe).

    On failure the guest's journal goes to ``logs/`` and the domain is destroyed."""
    r = loaded.recipe
    check_boot_files(out)
    forwards = [(_free_port(), port) for port in r.ports]
    xml = dx.build_xml(dx.DomainParams(
        ident=ident, domain_type=dtype, memory_mib=r.vm.memory_mib, vcpus=r.vm.vcpus,
        kernel=out / "vmlinuz", initrd=out / "initrd.img",
        cmdline=f"{KERNEL_ARGS} {r.kernel_args}".strip(), disk=disk, console_log=console,
        forwards=forwards, description=description, backing=(out / "base.qcow2",)))
    hv.destroy(ident.name)     # a leftover of a crashed build or benchmark
    hv.check_reachable(dtype, disk, out / "vmlinuz")
    hv.check_reachable(dtype, out / "base.qcow2", read=True)
    start = time.monotonic()
    dom = hv.start(xml)
    try:
        marker, line = wait_for_console(
            console, [provision.READY_MARKER, provision.NOT_READY_MARKER,
                      provision.SEED_FAILED_MARKER],
            r.ready.timeout_s + 120, alive=lambda: domain_active(dom))
        if marker != provision.READY_MARKER:
            raise SandboxError(f"{ident.name}: {marker} during the cold boot")
        hv.agent(dom).wait(120)
        if r.ready.http is not None:
            port = dict((g, h) for h, g in forwards)[r.ready.http.port]
            wait_ready(f"http://127.0.0.1:{port}{r.ready.http.path}", 120, poll_s=0.25)
    except BaseException:
        _collect_journal(hv, dom, out / "logs" / f"journal-{console.stem}.log")
        hv.destroy(ident.name)
        raise
    uptime = float(line.split("uptime=", 1)[1]) if "uptime=" in line else None
    return ColdBoot(dom, forwards, time.monotonic() - start, uptime)


def _boot_slot(settings: Settings, loaded: LoadedRecipe, out: Path, dtype: str, index: int,
               progress: Progress) -> dict[str, Any]:
    """Step 4 for one slot: cold boot, readiness, warm-up, save. Returns the slot's metadata."""
    ident = dx.identity(loaded.key, index)
    key = slot_key(dtype, index)
    slots_dir = out / "slots"
    slots_dir.mkdir(exist_ok=True)
    disk = slots_dir / f"{key}.qcow2"
    memory = slots_dir / f"{key}.save"
    console = out / "logs" / f"boot-{key}.log"
    for stale in (disk, memory, console):
        stale.unlink(missing_ok=True)
    qemu_img_overlay(out / "base.qcow2", disk)
    # The domain has the slot's name: hold the slot's host lock so no lease restores (and, seeing
    # a same-named domain, destroys) into it meanwhile.
    lock = try_host_lock(index)
    if lock is None:
        progress(f"slot {index}: in use on this host; waiting for it")
        lock = host_lock(index, wait_s=3600)
    try:
        return _boot_and_save(settings, loaded, out, dtype, index, progress, ident, disk,
                              memory, console)
    finally:
        lock.close()


def _boot_and_save(settings: Settings, loaded: LoadedRecipe, out: Path, dtype: str, index: int,
                   progress: Progress, ident: dx.Identity, disk: Path, memory: Path,
                   console: Path) -> dict[str, Any]:
    r = loaded.recipe
    key = slot_key(dtype, index)
    slots_dir = out / "slots"
    with Hypervisor(settings.libvirt_uri) as hv:
        progress(f"slot {index}: cold boot ({dtype}, {r.vm.vcpus} vCPU, {r.vm.memory_mib} MiB)")
        try:
            boot = cold_boot(hv, loaded, out, ident, dtype, disk, console,
                             dx.description_for(str(Holder.mine()), "build"))
        except BaseException:
            disk.unlink(missing_ok=True)
            tail = console.read_text(errors="replace")[-3000:] if console.exists() else ""
            progress(f"slot {index}: failed; serial console tail:\n{tail}")
            raise
        progress(f"slot {index}: ready in {boot.seconds:.1f} s (guest uptime {boot.guest_uptime_s} s)")
        saved = False
        try:
            agent = hv.agent(boot.dom)
            t = time.monotonic()
            agent.exec(["/bin/sh", "-c", SHRINK], timeout=120)
            for command in r.warmup:
                res = agent.exec(["/bin/sh", "-ec", command], timeout=r.warmup_timeout_s)
                if not res.ok:
                    raise SandboxError(f"slot {index}: warm-up failed ({res.exit_code}): {command}\n"
                                       f"{res.tail(2000)}")
            agent.exec(["sync"], timeout=60)
            warmup_s = time.monotonic() - t
            progress(f"slot {index}: warm-up {warmup_s:.1f} s; saving memory")
            t = time.monotonic()
            tmp = slots_dir / f".{key}.save.tmp"
            tmp.unlink(missing_ok=True)
            hv.save(boot.dom, tmp)
            saved = True
            os.replace(tmp, memory)
            save_s = time.monotonic() - t
        except BaseException:
            if not saved:
                _collect_journal(hv, boot.dom, out / "logs" / f"journal-{key}.log")
                hv.destroy(ident.name)
            disk.unlink(missing_ok=True)
            raise
    size = memory.stat().st_size
    progress(f"slot {index}: saved {size / 2**20:.0f} MiB in {save_s:.1f} s")
    return {"index": index, "domain_type": dtype, "name": ident.name, "uuid": ident.uuid,
            "mac": ident.mac, "disk": f"slots/{disk.name}", "memory": f"slots/{memory.name}",
            "cold_boot_s": round(boot.seconds, 2), "guest_uptime_s": boot.guest_uptime_s,
            "warmup_s": round(warmup_s, 2), "save_s": round(save_s, 2), "memory_bytes": size,
            "saved_at": datetime.now(UTC).isoformat()}


def _qemu_gid(settings: Settings, dtype: str) -> int | None:
    """The group QEMU runs with (libvirt's DAC base label): golden disks are given to it."""
    with Hypervisor(settings.libvirt_uri) as hv:
        label = hv.qemu_label(dtype)
    return label[1] if label else None


def _collect_journal(hv: Hypervisor, dom: Any, path: Path) -> None:
    """Best effort: the guest's journal of this boot, for the build's failure report."""
    if not domain_active(dom):
        return
    try:
        res = hv.agent(dom).exec(["journalctl", "-b", "--no-pager", "-n", "400"], timeout=60)
        path.write_text(res.stdout + res.stderr)
    except SandboxError:
        pass


def prune_unused(settings: Settings, keep: str, progress: Progress) -> list[str]:
    """Delete built images that no run leased for ``DIFFIE_IMAGE_KEEP_S`` and no domain uses
    (never ``keep``). A new build of a recipe does not drop the one before it: a pull request
    still under review (or a base branch) may reference it."""
    root = settings.image_cache_dir.expanduser().resolve()
    try:
        with Hypervisor(settings.libvirt_uri) as hv:
            in_use = {d.name for d in hv.diffie_domains()}
    except SandboxError:
        return []
    cutoff = time.time() - settings.image_keep_s
    removed = []
    for old in sorted(root.glob("*-*")):
        if old.name == keep or not old.is_dir():
            continue
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*-[0-9a-f]{16}", old.name):
            continue
        if last_used(old) > cutoff:
            continue
        if any(d.startswith(f"{dx.PREFIX}{old.name}-s") for d in in_use):
            continue
        shutil.rmtree(old, ignore_errors=True)
        (root / f".{old.name}.lock").unlink(missing_ok=True)
        removed.append(old.name)
    if removed:
        progress(f"pruned images unused for {settings.image_keep_s / 86400:g} days: "
                 f"{', '.join(removed)}")
    return removed


def build_image(settings: Settings, name: str, *, progress: Progress = print_progress,
                slots: int | None = None, force: bool = False) -> ImageInfo:
    """Build (or reuse) the operator's image ``name`` (``vm_images/<name>``) with snapshots
    for slots ``0..slots-1``.

    ``slots`` defaults to ``settings.vm_slots``; ``force`` rebuilds from scratch. Raises
    :class:`SandboxError` with the failing step and the tail of its log.
    """
    return build_recipe(settings, load_recipe(settings.vm_images_dir, name), progress=progress,
                        slots=slots, force=force)


def build_recipe(settings: Settings, loaded: LoadedRecipe, *, progress: Progress = print_progress,
                 slots: int | None = None, force: bool = False) -> ImageInfo:
    """Build (or reuse) the image of a loaded recipe (an operator's or a repository's)."""
    name = loaded.name
    out = image_dir(settings, loaded)
    count = settings.vm_slots if slots is None else slots
    if count < 1:
        raise SandboxError("an image needs at least one slot")
    confine.make_dir(out.parent)      # traversable by QEMU's unprivileged user
    with _locked(out.parent / f".{loaded.key}.lock"):
        if force and out.exists():
            shutil.rmtree(out)
        (out / "logs").mkdir(parents=True, exist_ok=True)
        meta = read_meta(out) or {}
        if not (out / "base.qcow2").exists():
            progress(f"building image {name} ({loaded.key}) in {out}")
            total = time.monotonic()
            timings = _build_disk(loaded, out, progress)
            meta = {"name": name, "key": loaded.key, "digest": loaded.digest,
                    "builder_version": BUILDER_VERSION, "recipe_dir": str(loaded.dir),
                    "origin": loaded.origin, "source": loaded.source,
                    "suite": loaded.recipe.suite, "packages": loaded.recipe.all_packages(),
                    "ports": loaded.recipe.ports, "vm": loaded.recipe.vm.model_dump(),
                    "kernel_args": f"{KERNEL_ARGS} {loaded.recipe.kernel_args}".strip(),
                    "boot_files_sha256": boot_file_digests(out),
                    "created_at": datetime.now(UTC).isoformat(), "timings": timings, "slots": {}}
            write_meta(out, meta)
            progress(f"disk ready in {time.monotonic() - total:.0f} s")
        else:
            progress(f"image {name} ({loaded.key}): disk cached")
        info = read_image(out, name)
        assert info is not None
        dtype = choose_domain_type(settings.vm_domain_type)
        missing = [i for i in range(count)
                   if not any(s.domain_type == dtype and s.index == i for s in info.snapshots())]
        qemu_gid: int | None = None
        if missing:
            try:
                ensure_daemons(settings.libvirt_uri)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                raise SandboxError(f"cannot start libvirt: {exc}") from exc
            qemu_gid = _qemu_gid(settings, dtype)
            confine.secure_image(out, qemu_gid)      # QEMU reads base.qcow2 from now on
        for index in missing:
            entry = _boot_slot(settings, loaded, out, dtype, index, progress)
            meta = read_meta(out) or meta
            meta.setdefault("slots", {})[slot_key(dtype, index)] = entry
            write_meta(out, meta)
            confine.secure_image(out, qemu_gid)
        if not missing:
            progress(f"snapshots cached for slot(s) 0..{count - 1} ({dtype})")
        else:
            prune_unused(settings, loaded.key, progress)
    info = read_image(out, name)
    assert info is not None
    return info
