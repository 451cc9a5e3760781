"""Remove what a crashed worker left behind: domains, overlays, slot leases. Run at worker start.

Every Diffie domain carries its holder in its description (``diffie lease <holder>``) and every
lease's working directory is named after its holder process (``<slot>-<pid>.<start>.<nonce>``).
Whatever belongs to a process of this host that no longer runs is removed; anything of a live
process (or of another host) is left alone.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any

from diffie.config import Settings
from diffie.db import Database
from diffie.errors import SandboxError
from diffie.sandbox import domain as dx
from diffie.sandbox.libvirt import Hypervisor
from diffie.sandbox.slots import Holder, process_start, reclaim_dead
from diffie.sandbox.store import leases_dir


@dataclass
class ReapReport:
    domains: list[str] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"domains": self.domains, "overlays": self.overlays, "slots": self.slots,
                "errors": self.errors}


def _lease_dir_alive(name: str) -> bool:
    """``<slot>-<pid>.<start>.<nonce>``: is that process still running?"""
    try:
        _slot, proc = name.split("-", 1)
        pid_s, start, _nonce = proc.split(".", 2)
        pid = int(pid_s)
    except ValueError:
        return False
    return process_start(pid) == start


def reap(settings: Settings, db: Database | None = None) -> ReapReport:
    """Destroy dead holders' domains, delete their overlays, release their slots."""
    report = ReapReport()
    try:
        with Hypervisor(settings.libvirt_uri) as hv:
            for summary in hv.diffie_domains():
                holder = Holder.parse(dx.holder_of(summary.description))
                if holder is not None and holder.alive():
                    continue
                try:
                    hv.destroy(summary.name)
                    report.domains.append(summary.name)
                except SandboxError as exc:
                    report.errors.append(str(exc))
    except SandboxError as exc:
        report.errors.append(str(exc))
    base = leases_dir(settings)
    if base.is_dir():
        for entry in sorted(base.iterdir()):
            if entry.is_dir() and not _lease_dir_alive(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
                report.overlays.append(entry.name)
    if db is not None:
        report.slots = reclaim_dead(db)
    return report
