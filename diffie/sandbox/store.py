"""The image cache on disk: where a built image lives and what its metadata says.

``<image_cache_dir>/<name>-<hash16>/``::

    meta.json                 what was built, when, timings, per-slot snapshots
    base.qcow2                the golden disk as debootstrapped (never booted)
    vmlinuz, initrd.img       the guest's own kernel (direct kernel boot)
    slots/<type>-<i>.qcow2    slot i's disk after its cold boot (backing file of every overlay)
    slots/<type>-<i>.save     slot i's memory image (restored per lease)
    logs/                     build log and cold-boot serial consoles
    last-used                 touched by every lease (unused images are pruned by its age)
``<image_cache_dir>/.leases/<slot>-<pid>.<start>.<nonce>/``: one lease's overlay and serial log

QEMU runs unprivileged (``confine.py``): every file it opens lives under the cache, whose
directories it can traverse (``0711``) and whose files it may use only while libvirt has
chowned them to it (``0600``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffie.config import Settings
from diffie.errors import SandboxError
from diffie.sandbox.confine import LEASES
from diffie.sandbox.recipe import LoadedRecipe, load_recipe

META = "meta.json"


@dataclass(frozen=True)
class SlotSnapshot:
    index: int
    domain_type: str
    disk: Path
    memory: Path
    cold_boot_s: float


@dataclass(frozen=True)
class ImageInfo:
    """A built image (disk ready; snapshots for the slots built so far)."""

    name: str
    key: str
    dir: Path
    meta: dict[str, Any]

    @property
    def base_disk(self) -> Path:
        return self.dir / "base.qcow2"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def ports(self) -> list[int]:
        return [int(p) for p in self.meta.get("ports", [])]

    @property
    def cold_boot_s(self) -> float | None:
        """Cold boot to ready of the first slot built (wall seconds)."""
        times = [s["cold_boot_s"] for s in self.meta.get("slots", {}).values()]
        return float(times[0]) if times else None

    def snapshots(self) -> list[SlotSnapshot]:
        out = []
        for entry in self.meta.get("slots", {}).values():
            snap = SlotSnapshot(index=int(entry["index"]), domain_type=entry["domain_type"],
                                disk=self.dir / entry["disk"], memory=self.dir / entry["memory"],
                                cold_boot_s=float(entry["cold_boot_s"]))
            if snap.disk.exists() and snap.memory.exists():
                out.append(snap)
        return sorted(out, key=lambda s: (s.domain_type, s.index))

    def snapshot(self, domain_type: str, index: int) -> SlotSnapshot:
        for snap in self.snapshots():
            if snap.domain_type == domain_type and snap.index == index:
                return snap
        have = ", ".join(f"{s.domain_type}-{s.index}" for s in self.snapshots()) or "none"
        raise SandboxError(
            f"image {self.name!r} has no snapshot for slot {index} (domain type {domain_type}; "
            f"built: {have}); run `diffie image build {self.name}` with DIFFIE_VM_SLOTS >= {index + 1}")


def slot_key(domain_type: str, index: int) -> str:
    return f"{domain_type}-{index}"


def image_dir(settings: Settings, loaded: LoadedRecipe) -> Path:
    return settings.image_cache_dir.expanduser().resolve() / loaded.key


def read_meta(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / META).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    tmp = directory / f".{META}.{os.getpid()}"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, directory / META)


def read_image(directory: Path, name: str) -> ImageInfo | None:
    meta = read_meta(directory)
    if meta is None or not (directory / "base.qcow2").exists():
        return None
    return ImageInfo(name=name, key=directory.name, dir=directory, meta=meta)


KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*-[0-9a-f]{16}$")


def find_image(settings: Settings, name: str) -> ImageInfo:
    """The built image of the operator's recipe ``name`` as it is now, or the built image
    whose key (``<name>-<16 hex>``, content-addressed) is ``name``; SandboxError if not built."""
    if KEY_RE.match(name):
        directory = settings.image_cache_dir.expanduser().resolve() / name
        meta = read_meta(directory)
        info = read_image(directory, str(meta.get("name", name)) if meta else name)
        if info is None or not info.snapshots():
            raise SandboxError(f"image {name} is not built (or was pruned); the run that "
                               "needs it builds it again")
        return info
    loaded = load_recipe(settings.vm_images_dir, name)
    info = read_image(image_dir(settings, loaded), name)
    if info is None or not info.snapshots():
        raise SandboxError(f"image {name!r} is not built for its current recipe ({loaded.key}); "
                           f"run `diffie image build {name}`")
    return info


def leases_dir(settings: Settings) -> Path:
    """Per-lease working files (overlay disk, serial log): ``<image_cache_dir>/.leases``, next
    to the images they are backed by and reachable by QEMU's unprivileged user (the data dir
    may not be, e.g. under /root or a 0700 temporary directory)."""
    return settings.image_cache_dir.expanduser().resolve() / LEASES


USED_MARK = "last-used"


def mark_used(info: ImageInfo) -> None:
    """Record that a run leased ``info`` now (what :func:`prune_unused` keeps by)."""
    try:
        (info.dir / USED_MARK).touch()
    except OSError:
        pass


def last_used(directory: Path) -> float:
    """When the image in ``directory`` was last leased (or built)."""
    stamps = [directory / USED_MARK, directory / "meta.json"]
    return max((p.stat().st_mtime for p in stamps if p.exists()), default=0.0)
