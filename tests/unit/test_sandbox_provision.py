"""Provisioning a tree: network, generated units, copies; the image store's lookups."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from diffie.errors import SandboxError
from diffie.sandbox import provision
from diffie.sandbox.reaper import _lease_dir_alive
from diffie.sandbox.recipe import load_recipe
from diffie.sandbox.slots import Holder
from diffie.sandbox.store import ImageInfo

RECIPE = """\
ports: [8000]
files:
  - {src: app, dest: /srv/app}
  - {src: app.service, dest: /etc/systemd/system/app.service, mode: "0600"}
enable: [app.service]
seed_after: [postgresql.service]
seed: ["echo seeding"]
ready: {command: "curl -fs localhost:8000/health", timeout_s: 42}
"""


@pytest.fixture
def loaded(tmp_path: Path):
    d = tmp_path / "vm_images" / "demo"
    (d / "app" / "__pycache__").mkdir(parents=True)
    (d / "app" / "main.py").write_text("print(1)\n")
    (d / "app" / "__pycache__" / "main.pyc").write_bytes(b"x")
    (d / "app.service").write_text("[Service]\nExecStart=/bin/true\n")
    (d / "recipe.yml").write_text(RECIPE)
    return load_recipe(tmp_path / "vm_images", "demo")


def test_system_files(loaded, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    provision.copy_files(loaded, tree)
    provision.write_system_files(loaded, tree)
    assert (tree / "srv/app/main.py").read_text() == "print(1)\n"
    assert not (tree / "srv/app/__pycache__").exists()
    assert (tree / "etc/systemd/system/app.service").stat().st_mode & 0o777 == 0o600
    interfaces = (tree / "etc/network/interfaces").read_text()
    assert "address 10.0.2.15/24" in interfaces and "gateway 10.0.2.2" in interfaces
    seed_unit = (tree / "etc/systemd/system/diffie-seed.service").read_text()
    assert "After=postgresql.service" in seed_unit and "Before=app.service" in seed_unit
    assert "ConditionPathExists=!/var/lib/diffie/seeded" in seed_unit
    seed = (tree / "usr/local/lib/diffie/seed.sh").read_text()
    assert "echo seeding" in seed and os.access(tree / "usr/local/lib/diffie/seed.sh", os.X_OK)
    ready = (tree / "usr/local/lib/diffie/ready.sh").read_text()
    assert "curl -fs localhost:8000/health" in ready and "+ 42 ))" in ready
    assert provision.READY_MARKER in ready and provision.NOT_READY_MARKER in ready


def test_kernel_files_must_exist(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    with pytest.raises(SandboxError, match="no kernel"):
        provision.kernel_files(tmp_path)
    (tmp_path / "boot" / "vmlinuz-6.1.0-1-amd64").write_text("k")
    (tmp_path / "boot" / "initrd.img-6.1.0-1-amd64").write_text("i")
    assert provision.kernel_files(tmp_path)[0].name == "vmlinuz-6.1.0-1-amd64"


def test_snapshot_lookup_names_what_is_built(tmp_path: Path) -> None:
    (tmp_path / "slots").mkdir()
    for name in ("slots/qemu-0.qcow2", "slots/qemu-0.save"):
        (tmp_path / name).write_text("")
    meta = {"ports": [8000], "slots": {"qemu-0": {
        "index": 0, "domain_type": "qemu", "disk": "slots/qemu-0.qcow2",
        "memory": "slots/qemu-0.save", "cold_boot_s": 25.0}}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    info = ImageInfo(name="shop", key="shop-0123", dir=tmp_path, meta=meta)
    assert info.snapshot("qemu", 0).memory == tmp_path / "slots/qemu-0.save"
    assert info.cold_boot_s == 25.0 and info.ports == [8000]
    with pytest.raises(SandboxError, match=r"no snapshot for slot 1 .*built: qemu-0.*DIFFIE_VM_SLOTS >= 2"):
        info.snapshot("qemu", 1)


def test_lease_directories_of_live_and_dead_processes() -> None:
    me = Holder.mine()
    assert _lease_dir_alive(f"0-{me.process_tag}")
    assert not _lease_dir_alive("0-999999999.1.ab")
    assert not _lease_dir_alive("garbage")
