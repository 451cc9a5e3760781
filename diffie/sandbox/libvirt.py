"""The libvirt sandbox: the only module that imports ``libvirt`` / ``libvirt_qemu``.

``LibvirtSandbox(settings, db).lease(image)`` leases a slot in the database, restores the
slot's golden memory image onto a fresh copy-on-write overlay, sets the guest clock and yields
a :class:`LibvirtMachine`; on exit (exceptions included) it destroys the domain, deletes the
overlay and releases the slot.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu

from diffie.config import Settings
from diffie.db import Database
from diffie.errors import SandboxError
from diffie.sandbox import confine, slots
from diffie.sandbox import domain as dx
from diffie.sandbox.base import ExecResult
from diffie.sandbox.guest import GuestAgent
from diffie.sandbox.host import choose_domain_type
from diffie.sandbox.package_proxy import (
    GUEST_TUNNEL,
    RELAY_READY_S,
    STOP_RELAY,
    PackageProxy,
    Tunnel,
    relay_command,
    relay_ready_command,
    shared_proxy,
)
from diffie.sandbox.store import find_image, leases_dir, mark_used

PORTS_PER_SLOT = 10
LEASE_WAIT_S = 900.0      # how long a lease waits for a free VM slot by default
_LABELS: dict[tuple[str, str], tuple[int, int] | None] = {}


def _quiet(_ctx: Any, _err: Any) -> None:
    """libvirt prints every error to stderr by default; we raise them instead."""


libvirt.registerErrorHandler(_quiet, None)


def _msg(exc: libvirt.libvirtError) -> str:
    return exc.get_error_message() or str(exc)


@dataclass(frozen=True)
class DomainSummary:
    name: str
    description: str | None
    active: bool


class Hypervisor:
    """One libvirt connection and the few operations Diffie needs."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        try:
            self.conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise SandboxError(f"cannot connect to libvirt at {uri}: {_msg(exc)} "
                               "(run scripts/setup-vm-host.sh)") from exc

    def close(self) -> None:
        try:
            self.conn.close()
        except libvirt.libvirtError:
            pass

    def __enter__(self) -> Hypervisor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self, xml: str) -> libvirt.virDomain:
        try:
            return self.conn.createXML(xml, 0)
        except libvirt.libvirtError as exc:
            raise SandboxError(f"cannot start domain: {_msg(exc)}") from exc

    def lookup(self, name: str) -> libvirt.virDomain | None:
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError:
            return None

    def destroy(self, name: str) -> bool:
        """Destroy (and undefine, if persistent) a domain; False if it did not exist."""
        dom = self.lookup(name)
        if dom is None:
            return False
        try:
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError as exc:
            still = self.lookup(name)
            try:
                running = still is not None and bool(still.isActive())
            except libvirt.libvirtError:
                running = False
            if running:
                raise SandboxError(f"cannot destroy domain {name}: {_msg(exc)}") from exc
        try:
            if dom.isPersistent():
                dom.undefine()
        except libvirt.libvirtError:
            pass
        return True

    def save(self, dom: libvirt.virDomain, path: Path) -> None:
        try:
            dom.saveFlags(str(path), None, libvirt.VIR_DOMAIN_SAVE_RUNNING)
        except libvirt.libvirtError as exc:
            raise SandboxError(f"cannot save domain {dom.name()}: {_msg(exc)}") from exc

    @staticmethod
    def snapshot(dom: libvirt.virDomain, name: str) -> libvirt.virDomainSnapshot:
        """An internal snapshot of the running domain, memory and disk, kept inside its qcow2
        overlay (never in the golden layers below it, which QEMU opens read-only)."""
        xml = (f"<domainsnapshot><name>{name}</name>"
               "<description>diffie: the deployed state</description>"
               "<memory snapshot='internal'/></domainsnapshot>")
        try:
            return dom.snapshotCreateXML(xml, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)
        except libvirt.libvirtError as exc:
            raise SandboxError(f"cannot snapshot domain {dom.name()}: {_msg(exc)}") from exc

    @staticmethod
    def revert(snap: libvirt.virDomainSnapshot) -> None:
        try:
            snap.getDomain().revertToSnapshot(snap, libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)
        except libvirt.libvirtError as exc:
            raise SandboxError(f"cannot revert to snapshot {snap.getName()}: {_msg(exc)}") from exc

    @staticmethod
    def delete_snapshot(snap: libvirt.virDomainSnapshot) -> None:
        try:
            snap.delete(0)
        except libvirt.libvirtError as exc:
            raise SandboxError(f"cannot delete snapshot {snap.getName()}: {_msg(exc)}") from exc

    def saved_xml(self, path: Path) -> str:
        try:
            return str(self.conn.saveImageGetXMLDesc(str(path), 0))
        except libvirt.libvirtError as exc:
            raise SandboxError(f"cannot read saved image {path}: {_msg(exc)}") from exc

    def restore(self, path: Path, xml: str, name: str) -> libvirt.virDomain:
        try:
            self.conn.restoreFlags(str(path), xml, libvirt.VIR_DOMAIN_SAVE_RUNNING)
        except libvirt.libvirtError as exc:
            raise SandboxError(f"cannot restore {path.name}: {_msg(exc)}") from exc
        dom = self.lookup(name)
        if dom is None:
            raise SandboxError(f"restored domain {name} vanished")
        return dom

    def diffie_domains(self) -> list[DomainSummary]:
        out = []
        try:
            domains = self.conn.listAllDomains(0)
        except libvirt.libvirtError as exc:
            raise SandboxError(f"cannot list domains: {_msg(exc)}") from exc
        for dom in domains:
            try:
                name = dom.name()
                if not name.startswith(dx.PREFIX):
                    continue
                try:
                    desc = dom.metadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, None)
                except libvirt.libvirtError:
                    desc = None
                out.append(DomainSummary(name, desc, bool(dom.isActive())))
            except libvirt.libvirtError:
                continue    # vanished meanwhile
        return out

    def qemu_label(self, domain_type: str) -> tuple[int, int] | None:
        """(uid, gid) QEMU runs as (libvirt's DAC base label; cached per URI and type)."""
        key = (self.uri, domain_type)
        if key not in _LABELS:
            try:
                caps = str(self.conn.getCapabilities())
            except libvirt.libvirtError:
                return None
            _LABELS[key] = confine.qemu_label(caps, domain_type)
        return _LABELS[key]

    def check_reachable(self, domain_type: str, *paths: Path, read: bool = False) -> None:
        """SandboxError naming what keeps QEMU's user from ``paths`` (traversal; with ``read``,
        also reading them as they are: golden layers libvirt does not relabel), if anything."""
        label = self.qemu_label(domain_type)
        if label is None:
            return
        for path in paths:
            problem = confine.unreachable_message(path, *label, read=read)
            if problem:
                raise SandboxError(problem)

    @staticmethod
    def agent(dom: libvirt.virDomain) -> GuestAgent:
        def call(command: str, arguments: dict[str, Any] | None, timeout_s: float) -> Any:
            payload: dict[str, Any] = {"execute": command}
            if arguments is not None:
                payload["arguments"] = arguments
            try:
                out = libvirt_qemu.qemuAgentCommand(dom, json.dumps(payload), max(1, int(timeout_s)), 0)
            except libvirt.libvirtError as exc:
                raise SandboxError(f"guest agent {command}: {_msg(exc)}") from exc
            return json.loads(out).get("return") if out else None
        return GuestAgent(call)

    @staticmethod
    def hmp(dom: libvirt.virDomain, command: str) -> str:
        try:
            return str(libvirt_qemu.qemuMonitorCommand(
                dom, command, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP))
        except libvirt.libvirtError as exc:
            raise SandboxError(f"QEMU monitor {command!r}: {_msg(exc)}") from exc


def slot_ports(settings: Settings, index: int) -> list[int]:
    start = settings.vm_port_base + index * PORTS_PER_SLOT
    return list(range(start, start + PORTS_PER_SLOT))


def qemu_img_overlay(backing: Path, overlay: Path) -> None:
    """A copy-on-write overlay on ``backing``, readable by its owner only (confine.FILE_MODE)."""
    res = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                          "-b", str(backing), str(overlay)], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise SandboxError(f"qemu-img create {overlay.name} failed: {res.stderr.strip()}")
    confine.secure_file(overlay)


class LibvirtMachine:
    """A running restored guest (the :class:`diffie.sandbox.base.Machine` protocol)."""

    def __init__(self, name: str, dom: libvirt.virDomain, agent: GuestAgent,
                 forwards: dict[int, int], spare_ports: list[int], console_log: Path,
                 slot: int) -> None:
        self.name = name
        # every command's environment: the package installers pointed at the proxy while
        # the package tunnel is open (open_packages)
        self.env: dict[str, str] = {}
        self._tunnel: Tunnel | None = None
        self._tunnel_port: int | None = None
        self.slot = slot
        self.console_log = console_log
        self._dom = dom
        self.agent = agent
        self._forwards = dict(forwards)        # guest port -> host port
        self._spare = list(spare_ports)
        self.timings: dict[str, float] = {}    # seconds per lease phase (slot, restore, ...)
        self._checkpoint: libvirt.virDomainSnapshot | None = None
        self._checkpoints = 0

    def exec(self, argv: Sequence[str], *, timeout: float = 120.0,
             env: dict[str, str] | None = None, cwd: str | None = None) -> ExecResult:
        return self.agent.exec(argv, timeout=timeout, env={**self.env, **(env or {})}, cwd=cwd)

    def put_tree(self, src: Path, dest: str) -> None:
        self.agent.put_tree(src, dest)

    def set_clock(self, instant: datetime) -> None:
        self.agent.set_time(instant)

    def open_packages(self, proxy: PackageProxy) -> None:
        """Let the deploy commands install from the allowed registries (package_proxy.py):
        a forward of a spare host port into the guest relay, the relay, the host's pool."""
        if not self._spare:
            raise SandboxError("no host port left for the package tunnel")
        host_port = self._spare.pop()
        out = Hypervisor.hmp(self._dom, f"hostfwd_add {dx.NETDEV_ID} "
                                        f"tcp:127.0.0.1:{host_port}-:{GUEST_TUNNEL}")
        if out.strip():
            raise SandboxError(f"hostfwd_add for the package tunnel failed: {out.strip()[:300]}")
        self._tunnel_port = host_port
        res = self.exec(relay_command(), timeout=30)
        if not res.ok:
            raise SandboxError(f"the package relay did not start in the guest (is socat in "
                               f"the image?): {res.tail(500)}")
        self._tunnel = Tunnel(proxy, host_port).start()
        # the first installer must find the relay listening (under emulation the host's first
        # connections take a while to reach it; a refused connection is an install failure)
        ready = self.exec(relay_ready_command(), timeout=RELAY_READY_S * 2)
        if not ready.ok:
            raise SandboxError("the package relay in the guest did not start listening within "
                               f"{RELAY_READY_S} s: "
                               f"{ready.tail(300) or 'no host connection reached it'}")
        self.env = proxy.guest_env()

    def close_packages(self, *, in_guest: bool = True) -> None:
        """Close the way out before anything is checkpointed (flows never have one);
        ``in_guest=False``: the host's half only (the VM is about to be destroyed)."""
        if self._tunnel is None:
            return
        self._tunnel.close()
        self._tunnel = None
        self.env = {}
        if not in_guest:
            return
        self.exec(STOP_RELAY, timeout=30)
        if self._tunnel_port is not None:
            Hypervisor.hmp(self._dom, f"hostfwd_remove {dx.NETDEV_ID} "
                                      f"tcp:127.0.0.1:{self._tunnel_port}")
            self._tunnel_port = None

    def checkpoint(self) -> None:
        """An internal qcow2 snapshot (memory + disk) in this lease's overlay, which the lease's
        exit deletes with it (measured under TCG: ~1 s; a memory image saved with
        ``virDomainSave`` took 2.2-2.8 s and its restores were no faster: see README)."""
        self.close_packages()
        start = time.monotonic()
        if self._checkpoint is not None:
            Hypervisor.delete_snapshot(self._checkpoint)
            self._checkpoint = None
        self._checkpoints += 1
        self._checkpoint = Hypervisor.snapshot(self._dom, f"diffie-deployed-{self._checkpoints}")
        self.timings["checkpoint_s"] = round(time.monotonic() - start, 3)

    def reset(self) -> None:
        """Revert to the checkpoint (same QEMU process: the host port forwards stay) and wait
        until the guest agent answers again (its channel reconnects after the revert)."""
        if self._checkpoint is None:
            raise SandboxError(f"{self.name}: reset without a checkpoint")
        start = time.monotonic()
        Hypervisor.revert(self._checkpoint)
        self.agent.wait(timeout_s=60)
        self.timings["reset_s"] = round(time.monotonic() - start, 3)

    def url(self, guest_port: int) -> str:
        if guest_port not in self._forwards:
            if not self._spare:
                raise SandboxError(f"no host port left to forward guest port {guest_port}")
            host_port = self._spare.pop(0)
            out = Hypervisor.hmp(self._dom, f"hostfwd_add {dx.NETDEV_ID} "
                                            f"tcp:127.0.0.1:{host_port}-:{guest_port}")
            if out.strip():
                raise SandboxError(f"cannot forward guest port {guest_port}: {out.strip()}")
            self._forwards[guest_port] = host_port
        return f"http://127.0.0.1:{self._forwards[guest_port]}"


def _busy_ports(ports: Sequence[int], *, wait_s: float = 0.0) -> list[int]:
    """The ports of ``ports`` in use, after waiting up to ``wait_s`` for them to be freed."""
    deadline = time.monotonic() + wait_s
    while True:
        busy = [p for p in ports if _port_in_use(p)]
        if not busy or time.monotonic() >= deadline:
            return busy
        time.sleep(0.2)


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class LibvirtSandbox:
    """Restore-per-lease VMs on this host (the :class:`diffie.sandbox.base.Sandbox` protocol)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    @property
    def domain_type(self) -> str:
        return choose_domain_type(self.settings.vm_domain_type)

    @contextmanager
    def lease(self, image: str, *, run_id: str = "", wait_s: float | None = None,
              on_slot: Callable[[], None] | None = None) -> Iterator[LibvirtMachine]:
        t0 = time.monotonic()
        info = find_image(self.settings, image)
        mark_used(info)
        dtype = self.domain_type
        lease = slots.acquire(self.db, self.settings.vm_slots, run_id=run_id,
                              wait_s=LEASE_WAIT_S if wait_s is None else wait_s)
        timings = {"slot_s": time.monotonic() - t0}
        if on_slot is not None:
            on_slot()
        work = leases_dir(self.settings) / f"{lease.index}-{lease.holder.process_tag}"
        name: str | None = None
        hv: Hypervisor | None = None
        try:
            t = time.monotonic()
            snap = info.snapshot(dtype, lease.index)
            name = dx.identity(info.key, lease.index).name
            confine.make_dir(work)
            overlay = work / "disk.qcow2"
            qemu_img_overlay(snap.disk, overlay)
            ports = slot_ports(self.settings, lease.index)
            hv = Hypervisor(self.settings.libvirt_uri)
            hv.check_reachable(dtype, overlay, info.kernel)
            hv.check_reachable(dtype, snap.disk, info.base_disk, read=True)
            # We hold the slot (and its host lock): a domain of that name is a leftover of a
            # killed holder, and it still holds the slot's host ports until it is gone.
            leftover = hv.destroy(name)
            busy = _busy_ports(ports[:len(info.ports)], wait_s=10.0 if leftover else 0.0)
            if busy:
                raise SandboxError(f"host port(s) {busy} of slot {lease.index} are in use "
                                   "(change DIFFIE_VM_PORT_BASE)")
            forwards = list(zip(ports, info.ports, strict=False))
            xml = dx.patch_for_restore(hv.saved_xml(snap.memory), disk=overlay,
                                       console_log=work / "console.log", forwards=forwards,
                                       description=dx.description_for(str(lease.holder)),
                                       kernel=info.kernel, initrd=info.initrd,
                                       backing=(snap.disk, info.base_disk))
            timings["prepare_s"] = time.monotonic() - t
            t = time.monotonic()
            dom = hv.restore(snap.memory, xml, name)
            timings["restore_s"] = time.monotonic() - t
            machine = LibvirtMachine(name, dom, hv.agent(dom), {g: h for h, g in forwards},
                                     ports[len(info.ports):], work / "console.log", lease.index)
            t = time.monotonic()
            # The clock resumes at the moment of the save: correct it (without waiting for
            # `date` to finish; the first answer also proves the agent is up).
            machine.agent.start_set_time(datetime.now(UTC), timeout_s=120)
            timings["agent_s"] = time.monotonic() - t
            proxy = shared_proxy(self.settings.image_cache_dir.expanduser().resolve()
                                 / confine.PACKAGES, self.settings.package_registries,
                                 self.settings.package_index_ttl_s)
            if proxy is not None:
                t = time.monotonic()
                machine.open_packages(proxy)
                timings["packages_s"] = time.monotonic() - t
            timings["total_s"] = time.monotonic() - t0
            machine.timings = {k: round(v, 3) for k, v in timings.items()}
            try:
                yield machine
            finally:
                machine.close_packages(in_guest=False)
        except BaseException:
            self._teardown(hv, name, work, lease, quiet=True)
            raise
        else:
            self._teardown(hv, name, work, lease, quiet=False)

    def _teardown(self, hv: Hypervisor | None, name: str | None, work: Path,
                  lease: slots.Lease, *, quiet: bool) -> None:
        """Destroy the domain, delete the overlay, release the slot: each step whatever the
        others did. Problems are raised only when no other exception is on its way."""
        problems: list[str] = []
        try:
            if name is not None:
                if hv is None:
                    hv = Hypervisor(self.settings.libvirt_uri)
                hv.destroy(name)
        except SandboxError as exc:
            problems.append(str(exc))
        finally:
            if hv is not None:
                hv.close()
        shutil.rmtree(work, ignore_errors=True)
        try:
            slots.release(self.db, lease)
        except SandboxError as exc:
            problems.append(str(exc))
        if problems and not quiet:
            raise SandboxError("; ".join(problems))


def wait_for_console(path: Path, markers: Sequence[str], timeout_s: float,
                     alive: Any = None) -> tuple[str, str]:
    """Poll a serial log until a line starts with one of ``markers``; returns (marker, line)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            text = ""
        for line in text.splitlines():
            for marker in markers:
                if line.strip().startswith(marker):
                    return marker, line.strip()
        if alive is not None and not alive():
            raise SandboxError("the guest stopped during its boot")
        time.sleep(0.25)
    raise SandboxError(f"no {' / '.join(markers)} on the serial console after {timeout_s:.0f} s")


def domain_active(dom: libvirt.virDomain) -> bool:
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError:
        return False
