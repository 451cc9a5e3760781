"""QEMU confinement helpers: qemu.conf edits, who QEMU runs as, what it can reach, file modes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from diffie.sandbox import confine

CAPS = """<capabilities><host>
  <secmodel><model>none</model><doi>0</doi></secmodel>
  <secmodel><model>dac</model><doi>0</doi>
    <baselabel type='kvm'>+64055:+113</baselabel>
    <baselabel type='qemu'>+64055:+64055</baselabel>
  </secmodel>
</host></capabilities>"""


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory whose parents anyone may traverse (pytest's tmp_path sits in a
    0700 directory, which would block every path below it)."""
    path = Path(tempfile.mkdtemp(prefix="diffie-confine-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_conf_values_replace_in_place_and_append_the_rest() -> None:
    text = ('# user = "qemu"\nuser = "+0"\nsecurity_driver = "none"\n'
            "dynamic_ownership = 0\ndynamic_ownership = 0\n")
    out = confine.set_conf_values(text, confine.wanted_conf())
    lines = out.splitlines()
    assert lines[0] == '# user = "qemu"'                       # comments untouched
    assert lines[1] == 'user = "libvirt-qemu"'                 # replaced where libvirt reads it
    assert lines[2] == 'security_driver = "none"'              # not ours to decide
    assert lines[3] == "dynamic_ownership = 1"
    assert lines[4].startswith("# dynamic_ownership = 0")      # a later duplicate is disabled
    assert 'group = "libvirt-qemu"' in lines and "remember_owner = 1" in lines
    assert confine.set_conf_values(out, confine.wanted_conf()) == out   # idempotent


def test_qemu_label_from_capabilities() -> None:
    assert confine.qemu_label(CAPS, "qemu") == (64055, 64055)
    assert confine.qemu_label(CAPS, "kvm") == (64055, 113)
    assert confine.qemu_label("<capabilities/>", "qemu") is None
    assert confine.qemu_label("not xml", "qemu") is None
    assert confine.security_models(CAPS) == ["none", "dac"]
    assert confine.parse_label("+0:+0") == (0, 0)
    assert confine.parse_label("garbage") is None


def test_default_cache_is_outside_root_home_for_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert confine.default_image_cache_dir() == Path("/var/lib/diffie/images")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert confine.default_image_cache_dir() == Path.home() / ".cache" / "diffie" / "images"


def test_blocking_dir_names_the_directory_qemu_cannot_search(open_tmp: Path) -> None:
    tmp_path = open_tmp
    uid, gid = 64055, 64055          # not the owner of tmp_path (we are root or ourselves)
    top = tmp_path / "top"
    image = top / "cache" / "img"
    image.mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(top, 0o700)
    os.chmod(top / "cache", 0o711)
    found = confine.blocking_dir(image / "disk.qcow2", uid, {gid})
    assert found is not None and found[0] == top and found[1].startswith("drwx------")
    message = confine.unreachable_message(image / "disk.qcow2", uid, gid)
    assert message is not None and str(top) in message and "DIFFIE_IMAGE_CACHE_DIR" in message
    os.chmod(top, 0o711)
    assert confine.blocking_dir(image / "disk.qcow2", uid, {gid}) is None
    os.chmod(top, 0o710)             # group search only: enough for a member of the group
    if os.geteuid() == 0:
        os.chown(top, 0, gid)
        assert confine.blocking_dir(image, uid, {gid}) is None
        assert confine.blocking_dir(image, uid, {gid + 1}) is not None
    assert confine.blocking_dir(image, 0, set()) is None          # root passes everywhere


def test_unreadable_golden_disk_is_reported(open_tmp: Path) -> None:
    tmp_path = open_tmp
    os.chmod(tmp_path, 0o711)
    disk = tmp_path / "base.qcow2"
    disk.write_bytes(b"x")
    os.chmod(disk, 0o600)
    message = confine.unreachable_message(disk, 64055, 64055, read=True)
    assert message is not None and "cannot read the golden disk" in message
    assert confine.unreachable_message(disk, 64055, 64055) is None       # traversal alone is fine
    os.chmod(disk, 0o644)
    assert confine.unreachable_message(disk, 64055, 64055, read=True) is None


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _image(root: Path) -> Path:
    image = root / "shop-0123456789abcdef"
    (image / "slots").mkdir(parents=True)
    (image / "logs").mkdir()
    for name in ("base.qcow2", "vmlinuz", "initrd.img", "meta.json", "slots/qemu-0.qcow2",
                 "slots/qemu-0.save"):
        (image / name).write_bytes(b"x")
        os.chmod(image / name, 0o644)
    return image


def test_secure_image_modes(tmp_path: Path) -> None:
    image = _image(tmp_path)
    gid = os.getgid() if os.geteuid() != 0 else 64055
    confine.prepare_cache(tmp_path, gid)
    assert _mode(tmp_path) == 0o711 and _mode(tmp_path / confine.LEASES) == 0o711
    assert _mode(image) == 0o711 and _mode(image / "slots") == 0o711
    assert _mode(image / "logs") == 0o700
    for name in ("vmlinuz", "initrd.img", "slots/qemu-0.save"):
        assert _mode(image / name) == 0o600, name                   # libvirt's business
    for name in ("base.qcow2", "slots/qemu-0.qcow2"):
        st = (image / name).stat()
        if os.geteuid() == 0:                                       # read-only for QEMU
            assert (st.st_uid, st.st_gid, _mode(image / name)) == (0, gid, 0o640), name
        else:
            assert _mode(image / name) == 0o600, name
    assert _mode(image / "meta.json") == 0o644                      # ours, not secret


def test_migrate_legacy_cache_moves_and_rebases(tmp_path: Path) -> None:
    old, new = tmp_path / "root" / ".cache" / "images", tmp_path / "var" / "images"
    image = old / "shop-0123456789abcdef"
    (image / "slots").mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image / "base.qcow2"), "1M"],
                   check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    str(image / "base.qcow2"), str(image / "slots" / "qemu-0.qcow2")], check=True)
    assert confine.migrate_legacy_cache(old, new)
    assert not old.exists()
    moved = new / image.name / "slots" / "qemu-0.qcow2"
    info = subprocess.run(["qemu-img", "info", str(moved)], capture_output=True, text=True).stdout
    assert f"backing file: {new / image.name / 'base.qcow2'}" in info
    assert not confine.migrate_legacy_cache(old, new)              # nothing left to move


def test_a_kernel_changed_since_the_build_is_refused_at_cold_boot(tmp_path: Path) -> None:
    from diffie.errors import SandboxError
    from diffie.sandbox.images import boot_file_digests, check_boot_files
    from diffie.sandbox.store import write_meta

    for name in ("vmlinuz", "initrd.img"):
        (tmp_path / name).write_bytes(name.encode())
    check_boot_files(tmp_path)                                  # no meta: built before digests
    write_meta(tmp_path, {"boot_files_sha256": boot_file_digests(tmp_path)})
    check_boot_files(tmp_path)
    (tmp_path / "vmlinuz").write_bytes(b"tampered while QEMU owned it")
    with pytest.raises(SandboxError, match="vmlinuz changed since the image was built"):
        check_boot_files(tmp_path)


def test_configure_qemu_conf_keeps_the_file_private(tmp_path: Path) -> None:
    conf = tmp_path / "qemu.conf"
    conf.write_text('#user = "root"\n')
    os.chmod(conf, 0o600)
    assert confine.configure_qemu_conf(conf) is True
    assert 'user = "libvirt-qemu"' in conf.read_text() and _mode(conf) == 0o600
    assert confine.configure_qemu_conf(conf) is False           # nothing to change: no restart
