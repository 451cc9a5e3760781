"""Domain XML: fixed identities per (image, slot), restricted user-mode network, restore patch."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from diffie.sandbox import domain as dx

Q = "{" + dx.QEMU_NS + "}"


def _params(**kw: object) -> dx.DomainParams:
    values: dict[str, Any] = dict(
        ident=dx.identity("shop-0123456789abcdef", 0), domain_type="qemu", memory_mib=1024,
        vcpus=2, kernel=Path("/img/vmlinuz"), initrd=Path("/img/initrd.img"),
        cmdline="root=/dev/vda console=ttyS0", disk=Path("/img/slots/qemu-0.qcow2"),
        console_log=Path("/img/logs/boot.log"), forwards=[(47100, 8000)],
        description="diffie build host/1.2#ab:")
    values.update(kw)
    return dx.DomainParams(**values)


def test_identities_are_fixed_and_distinct_per_slot() -> None:
    a0, a1 = dx.identity("shop-0123456789abcdef", 0), dx.identity("shop-0123456789abcdef", 1)
    assert a0 == dx.identity("shop-0123456789abcdef", 0)
    assert len({a0.name, a1.name}) == 2 and len({a0.uuid, a1.uuid}) == 2
    assert len({a0.mac, a1.mac}) == 2 and a0.mac.startswith("52:54:00:")
    assert a0.name == "diffie-shop-0123456789abcdef-s0"
    assert dx.slot_of(a1.name) == 1 and dx.slot_of("other-vm") is None


def _el(root: ET.Element, path: str) -> ET.Element:
    found = root.find(path)
    assert found is not None, f"no {path} in the domain XML"
    return found


def test_cold_boot_xml() -> None:
    root = ET.fromstring(dx.build_xml(_params()))
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "diffie-shop-0123456789abcdef-s0"
    assert root.findtext("os/cmdline") == "root=/dev/vda console=ttyS0"
    assert _el(root, "devices/disk/source").get("file") == "/img/slots/qemu-0.qcow2"
    assert _el(root, "devices/channel/target").get("name") == "org.qemu.guest_agent.0"
    assert root.find("devices/interface") is None              # no libvirt network at all
    args = [a.get("value") or "" for a in root.iter(Q + "arg")]
    netdev = args[args.index("-netdev") + 1]
    assert "restrict=on" in netdev and "hostfwd=tcp:127.0.0.1:47100-:8000" in netdev
    device = args[args.index("-device") + 1]
    assert "addr=0x10" in device and "mac=52:54:00:" in device
    assert root.find("cpu") is None
    assert root.find("seclabel") is None          # QEMU runs as qemu.conf's unprivileged user
    kvm = ET.fromstring(dx.build_xml(_params(domain_type="kvm")))
    assert _el(kvm, "cpu").get("mode") == "host-passthrough"


def test_restore_patch_changes_only_host_side_settings() -> None:
    saved = dx.build_xml(_params())
    patched = ET.fromstring(dx.patch_for_restore(
        saved, disk=Path("/data/lease/disk.qcow2"), console_log=Path("/data/lease/console.log"),
        forwards=[(47110, 8000)], description="diffie lease host/9.9#cd:run1"))
    original = ET.fromstring(saved)
    for tag in ("name", "uuid", "memory", "vcpu", "os/kernel", "os/cmdline"):
        assert patched.findtext(tag) == original.findtext(tag)
    assert _el(patched, "devices/disk/source").get("file") == "/data/lease/disk.qcow2"
    assert _el(patched, "devices/serial/source").get("path") == "/data/lease/console.log"
    args = [a.get("value") or "" for a in patched.iter(Q + "arg")]
    assert any("hostfwd=tcp:127.0.0.1:47110-:8000" in a and "47100" not in a for a in args)
    assert any("mac=" + dx.identity("shop-0123456789abcdef", 0).mac in a for a in args)
    assert dx.holder_of(patched.findtext("description")) == "host/9.9#cd:run1"


def _chain(root: ET.Element) -> list[tuple[str | None, str | None]]:
    """(file, DAC relabel) of each backing layer of the domain's disk, top first."""
    out = []
    node: ET.Element | None = _el(root, "devices/disk")
    while node is not None and (node := node.find("backingStore")) is not None \
            and node.find("source") is not None:
        source = _el(node, "source")
        label = source.find("seclabel")
        out.append((source.get("file"), None if label is None else label.get("relabel")))
    return out


def test_golden_backing_layers_are_never_relabelled() -> None:
    root = ET.fromstring(dx.build_xml(_params(backing=(Path("/img/base.qcow2"),))))
    assert _chain(root) == [("/img/base.qcow2", "no")]
    patched = ET.fromstring(dx.patch_for_restore(
        dx.build_xml(_params(backing=(Path("/img/base.qcow2"),))),
        disk=Path("/c/.leases/1/disk.qcow2"), console_log=Path("/c/.leases/1/console.log"),
        forwards=[], description="d", backing=(Path("/c/slots/qemu-0.qcow2"), Path("/c/base.qcow2"))))
    assert _chain(patched) == [("/c/slots/qemu-0.qcow2", "no"), ("/c/base.qcow2", "no")]
    assert _el(patched, "devices/disk/source").find("seclabel") is None   # the overlay is


def test_restore_patch_drops_the_root_label_of_old_snapshots_and_follows_a_moved_cache() -> None:
    saved = ET.fromstring(dx.build_xml(_params()))
    old = ET.SubElement(saved, "seclabel", {"type": "static", "model": "dac", "relabel": "no"})
    ET.SubElement(old, "label").text = "+0:+0"                # what images built before carry
    patched = ET.fromstring(dx.patch_for_restore(
        ET.tostring(saved, encoding="unicode"), disk=Path("/new/.leases/1/disk.qcow2"),
        console_log=Path("/new/.leases/1/console.log"), forwards=[], description="d",
        kernel=Path("/new/img/vmlinuz"), initrd=Path("/new/img/initrd.img")))
    assert patched.find("seclabel") is None
    assert patched.findtext("os/kernel") == "/new/img/vmlinuz"
    assert patched.findtext("os/initrd") == "/new/img/initrd.img"


def test_holder_round_trip() -> None:
    assert dx.holder_of(dx.description_for("h/1.2#x:r", "build")) == "h/1.2#x:r"
    assert dx.holder_of(None) is None and dx.holder_of("someone else's vm") is None
