"""Domain XML: built for a cold boot, patched for a restore. Pure functions, no libvirt.

A saved memory image only restores under the name, UUID and MAC it was saved with, so every
(image, slot) pair has a fixed identity derived from its name. Host-side settings (the disk
overlay, the serial log, the ``hostfwd`` ports, the description) may change at restore.
"""

from __future__ import annotations

import hashlib
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "diffie-"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
NETDEV_ID = "diffienet0"
NIC_PCI_SLOT = "0x10"
_UUID_NS = uuid.UUID("6f1f3c52-3a55-4d3e-9d4b-7a1de0c6b2a1")

ET.register_namespace("qemu", QEMU_NS)


@dataclass(frozen=True)
class Identity:
    name: str
    uuid: str
    mac: str


def identity(image_key: str, slot: int) -> Identity:
    """The fixed identity of ``image_key`` (``<name>-<hash>``) in slot ``slot``."""
    name = f"{PREFIX}{image_key}-s{slot}"
    digest = hashlib.sha256(name.encode()).digest()
    mac = "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])
    return Identity(name=name, uuid=str(uuid.uuid5(_UUID_NS, name)), mac=mac)


def slot_of(domain_name: str) -> int | None:
    """The slot index of a Diffie domain name (``diffie-shop-<hash>-s1`` → 1)."""
    if not domain_name.startswith(PREFIX):
        return None
    head, sep, tail = domain_name.rpartition("-s")
    return int(tail) if sep and head and tail.isdigit() else None


@dataclass(frozen=True)
class DomainParams:
    ident: Identity
    domain_type: str                 # kvm | qemu
    memory_mib: int
    vcpus: int
    kernel: Path
    initrd: Path
    cmdline: str
    disk: Path                       # qcow2
    console_log: Path
    forwards: list[tuple[int, int]] = field(default_factory=list)   # (host port, guest port)
    description: str = ""
    backing: tuple[Path, ...] = ()   # disk's backing chain, top first: golden, read-only layers


def _netdev_arg(mac: str, forwards: list[tuple[int, int]]) -> tuple[str, str]:
    fwd = "".join(f",hostfwd=tcp:127.0.0.1:{h}-:{g}" for h, g in forwards)
    netdev = f"user,id={NETDEV_ID},restrict=on{fwd}"
    device = f"virtio-net-pci,netdev={NETDEV_ID},mac={mac},bus=pci.0,addr={NIC_PCI_SLOT}"
    return netdev, device


def set_backing_chain(disk: ET.Element, chain: Sequence[Path]) -> None:
    """Spell out ``disk``'s backing chain (top first), each layer with a DAC ``relabel='no'``:
    libvirt then leaves the golden layers ``root:<QEMU's group> 0640`` (read-only for QEMU)
    instead of chowning them to QEMU's user, which would let any guest's QEMU rewrite them.
    An empty chain removes the element (libvirt probes the chain and relabels every layer)."""
    for old in disk.findall("backingStore"):
        disk.remove(old)
    parent = disk
    for layer in chain:
        store = ET.SubElement(parent, "backingStore", {"type": "file"})
        ET.SubElement(store, "format", {"type": "qcow2"})
        source = ET.SubElement(store, "source", {"file": str(layer)})
        ET.SubElement(source, "seclabel", {"model": "dac", "relabel": "no"})
        parent = store
    if chain:
        ET.SubElement(parent, "backingStore")      # the chain ends here: nothing to probe


def build_xml(p: DomainParams) -> str:
    """The domain XML of a cold boot (direct kernel boot, user-mode NIC, guest agent)."""
    root = ET.Element("domain", {"type": p.domain_type})
    ET.SubElement(root, "name").text = p.ident.name
    ET.SubElement(root, "uuid").text = p.ident.uuid
    ET.SubElement(root, "description").text = p.description
    ET.SubElement(root, "memory", {"unit": "MiB"}).text = str(p.memory_mib)
    ET.SubElement(root, "vcpu").text = str(p.vcpus)
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type", {"arch": "x86_64", "machine": "pc"}).text = "hvm"
    ET.SubElement(os_el, "kernel").text = str(p.kernel)
    ET.SubElement(os_el, "initrd").text = str(p.initrd)
    ET.SubElement(os_el, "cmdline").text = p.cmdline
    features = ET.SubElement(root, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    if p.domain_type == "kvm":
        ET.SubElement(root, "cpu", {"mode": "host-passthrough"})
    ET.SubElement(root, "clock", {"offset": "utc"})
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        ET.SubElement(root, event).text = "destroy"
    dev = ET.SubElement(root, "devices")
    disk = ET.SubElement(dev, "disk", {"type": "file", "device": "disk"})
    ET.SubElement(disk, "driver", {"name": "qemu", "type": "qcow2", "discard": "unmap"})
    ET.SubElement(disk, "source", {"file": str(p.disk)})
    set_backing_chain(disk, p.backing)
    ET.SubElement(disk, "target", {"dev": "vda", "bus": "virtio"})
    serial = ET.SubElement(dev, "serial", {"type": "file"})
    ET.SubElement(serial, "source", {"path": str(p.console_log)})
    ET.SubElement(serial, "target", {"port": "0"})
    chan = ET.SubElement(dev, "channel", {"type": "unix"})
    ET.SubElement(chan, "target", {"type": "virtio", "name": "org.qemu.guest_agent.0"})
    rng = ET.SubElement(dev, "rng", {"model": "virtio"})
    ET.SubElement(rng, "backend", {"model": "random"}).text = "/dev/urandom"
    ET.SubElement(dev, "controller", {"type": "usb", "model": "none"})
    ET.SubElement(dev, "memballoon", {"model": "none"})
    # No <seclabel>: QEMU runs as qemu.conf's user (libvirt-qemu) and libvirt relabels the disk
    # chain, kernel and initrd for it (dynamic_ownership); AppArmor adds its own where enabled.
    cmd = ET.SubElement(root, f"{{{QEMU_NS}}}commandline")
    netdev, device = _netdev_arg(p.ident.mac, p.forwards)
    for arg in ("-netdev", netdev, "-device", device):
        ET.SubElement(cmd, f"{{{QEMU_NS}}}arg", {"value": arg})
    return ET.tostring(root, encoding="unicode")


def patch_for_restore(saved_xml: str, *, disk: Path, console_log: Path,
                      forwards: list[tuple[int, int]], description: str,
                      kernel: Path | None = None, initrd: Path | None = None,
                      backing: Sequence[Path] = ()) -> str:
    """The saved image's XML with this lease's overlay, serial log, forwards and description.

    ``backing``: the overlay's chain, top first (see :func:`set_backing_chain`).
    ``kernel``/``initrd``: where the image's files are now (a moved cache). A static DAC
    ``<seclabel>`` (images saved before QEMU ran unprivileged: ``+0:+0``, relabel no) is
    dropped, so such a snapshot restores under qemu.conf's unprivileged user too."""
    root = ET.fromstring(saved_xml)
    for sec in root.findall("seclabel"):
        if sec.get("model") == "dac" and sec.get("type") == "static":
            root.remove(sec)
    os_el = root.find("os")
    for tag, path in (("kernel", kernel), ("initrd", initrd)):
        el = os_el.find(tag) if os_el is not None else None
        if path is not None and el is not None:
            el.text = str(path)
    disks = [d for d in root.iter("disk") if d.get("device") == "disk"]
    if len(disks) != 1:
        raise ValueError(f"expected one disk in the saved domain, found {len(disks)}")
    source = disks[0].find("source")
    if source is None:
        raise ValueError("the saved domain's disk has no <source>")
    source.attrib = {"file": str(disk)}
    for label in source.findall("seclabel"):
        source.remove(label)
    set_backing_chain(disks[0], backing)
    for serial in root.iter("serial"):
        src = serial.find("source")
        if src is not None:
            src.set("path", str(console_log))
    for console in root.iter("console"):
        src = console.find("source")
        if src is not None:
            src.set("path", str(console_log))
    desc = root.find("description")
    if desc is None:
        desc = ET.SubElement(root, "description")
    desc.text = description
    cmd = root.find(f"{{{QEMU_NS}}}commandline")
    if cmd is None:
        raise ValueError("the saved domain has no <qemu:commandline> network")
    args = cmd.findall(f"{{{QEMU_NS}}}arg")
    for i, arg in enumerate(args):
        value = arg.get("value", "")
        if value.startswith("user,") and f"id={NETDEV_ID}" in value:
            mac = ""
            for dev_arg in args:
                dv = dev_arg.get("value", "")
                if dv.startswith("virtio-net-pci,") and "mac=" in dv:
                    mac = dv.split("mac=", 1)[1].split(",", 1)[0]
            args[i].set("value", _netdev_arg(mac, forwards)[0])
            break
    else:
        raise ValueError("the saved domain has no user-mode netdev")
    return ET.tostring(root, encoding="unicode")


def description_for(holder: str, purpose: str = "lease") -> str:
    """Domain description that lets the reaper judge a domain: ``diffie <purpose> <holder>``."""
    return f"diffie {purpose} {holder}"


def holder_of(description: str | None) -> str | None:
    if not description or not description.startswith("diffie "):
        return None
    parts = description.split(" ", 2)
    return parts[2] if len(parts) == 3 else None
