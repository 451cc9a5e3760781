"""QEMU runs confined (issue 9, item 8): the guest's QEMU process is not root, holds no
capabilities, can only read the golden disks (they stay root's), and the guest still reaches
no listener on the host's loopback. AppArmor is checked where the host has it.

On the code before this change the domain XML pinned QEMU to the worker's own user (root):
the first assertion failed there. System tier: one lease (~30-60 s under TCG).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from diffie.sandbox import confine
from diffie.sandbox.host import choose_domain_type
from diffie.sandbox.libvirt import LibvirtSandbox
from diffie.sandbox.store import ImageInfo
from tests.system.conftest import (  # noqa: F401  (fixtures, used by name)
    sandbox,
    shop_image,
    vm_data,
    vm_db,
    vm_host,
    vm_settings,
)
from tests.system.test_vm_isolation import PROBE, Listener

pytestmark = [pytest.mark.system, pytest.mark.timeout(1800)]


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _open_files(pid: int) -> dict[str, int]:
    """path → open(2) access mode (os.O_RDONLY / os.O_RDWR) of QEMU's open regular files."""
    out: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            flags = int(Path(f"/proc/{pid}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0], 8)
        except (OSError, IndexError, ValueError):
            continue
        if target.startswith("/"):
            mode = flags & os.O_ACCMODE
            out[target] = max(out.get(target, mode), mode)
    return out


def test_qemu_is_unprivileged_and_the_guest_cannot_reach_the_host(
        sandbox: LibvirtSandbox, shop_image: ImageInfo, vm_data: Path) -> None:  # noqa: F811
    settings = vm_settings(vm_data)
    dtype = choose_domain_type(settings.vm_domain_type)
    report = confine.inspect(settings.libvirt_uri, settings.image_cache_dir, dtype)
    print("\n".join(report.lines()))
    assert report.non_root, report.lines()          # scripts/setup-vm-host.sh configured it
    assert report.cache_problem is None, report.cache_problem
    golden = [shop_image.base_disk, *(s.disk for s in shop_image.snapshots())]
    listener = Listener()
    try:
        with sandbox.lease("shop", run_id="sec-qemu") as machine:
            pid = int(Path(f"/run/libvirt/qemu/{machine.name}.pid").read_text().strip())
            user = confine.process_user(pid)                       # ps -o user= -p <pid>
            assert user and user != "root", user
            status = _status(pid)
            assert all(int(u) != 0 for u in status["Uid"].split()), status["Uid"]
            assert all(int(g) != 0 for g in status["Gid"].split()), status["Gid"]
            assert int(status["CapEff"], 16) == 0, status["CapEff"]

            # The lease's overlay is QEMU's to write; the golden layers only to read, on disk
            # too: they stay root's (libvirt does not relabel them), group-readable at most.
            files = _open_files(pid)
            overlay = next(p for p in files if p.endswith("/disk.qcow2"))
            assert files[overlay] == os.O_RDWR, files
            for disk in golden:
                st = disk.stat()
                assert st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH), disk
                assert not st.st_mode & stat.S_IROTH, disk
                if str(disk) in files:
                    assert files[str(disk)] == os.O_RDONLY, (disk, files)
            assert str(shop_image.base_disk) in files, files

            label = confine.process_label(pid)
            if report.apparmor:
                assert label.startswith("libvirt-") and "enforce" in label, label
            else:
                assert not label.startswith("libvirt-"), label      # the report tells the truth

            # The guest still reaches nothing on the host (test_vm_isolation's probe).
            res = machine.exec(["python3", "-c", PROBE, "10.0.2.2", str(listener.port)], timeout=60)
            assert res.ok and res.stdout.startswith("BLOCKED"), res
        assert listener.accepted == 0
    finally:
        listener.close()
