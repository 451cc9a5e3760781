"""``python -m benchmarks.vm``: cold boot vs snapshot restore of the shop image, and one whole
VM verification of the sample app (base + head), measured in one run.

- cold boot: a fresh boot of the image's golden disk (first boot: seed, services) until the
  readiness marker and ``/health`` answer over the forwarded port;
- restore: ``LibvirtSandbox.lease`` (slot lease, overlay, restore, clock set) until ``/health``
  answers, median of ``--runs`` (5);
- verify: ``pipeline.run_change`` on an example change (restore + deploy + browse, twice),
  with its per-phase table: checkout, deploy and browse of each side, and the VM's checkpoint
  after each deploy and its reverts before each flow × viewport (inside those phases).

The last line is machine-readable::

    vm: cold_boot_s=<s> restore_median_s=<s> speedup=<cold/restore> verify_s=<s>
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from diffie.composition import job_deps
from diffie.config import Settings
from diffie.control import Lines
from diffie.db import Database
from diffie.models import Base
from diffie.pipeline import run_change
from diffie.run_store import ChangeInput
from diffie.sandbox import confine
from diffie.sandbox import domain as dx
from diffie.sandbox.host import choose_domain_type, ensure_daemons
from diffie.sandbox.images import build_image, cold_boot
from diffie.sandbox.libvirt import Hypervisor, LibvirtSandbox, qemu_img_overlay
from diffie.sandbox.recipe import load_recipe
from diffie.sandbox.slots import Holder
from diffie.sandbox.store import ImageInfo, leases_dir
from examples.corpus import CHANGES_DIR, SHOP_DIR, load_manifest, materialize_repo

REPO = Path(__file__).resolve().parent.parent
IMAGE = "shop"


def say(line: str) -> None:
    print(f"[bench] {line}", file=sys.stderr, flush=True)


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} on {os.cpu_count()} CPUs"


def measure_cold_boot(settings: Settings, info: ImageInfo) -> float:
    loaded = load_recipe(settings.vm_images_dir, IMAGE)
    holder = Holder.mine("bench")
    # QEMU runs unprivileged: its files go where it can reach them (a lease directory, which
    # the reaper removes if this process dies).
    work = leases_dir(settings) / f"bench-{holder.process_tag}"
    confine.make_dir(work)
    disk = work / "cold.qcow2"
    qemu_img_overlay(info.base_disk, disk)
    ident = dx.identity(f"bench-{info.key}", os.getpid() % 1000)
    try:
        with Hypervisor(settings.libvirt_uri) as hv:
            boot = cold_boot(hv, loaded, info.dir, ident,
                             choose_domain_type(settings.vm_domain_type), disk,
                             work / "cold-console.log", dx.description_for(str(holder), "bench"))
            hv.destroy(ident.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"cold boot to ready: {boot.seconds:.1f} s (guest uptime {boot.guest_uptime_s} s; {load_line()})")
    return boot.seconds


def measure_restore(sandbox: LibvirtSandbox, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        start = time.monotonic()
        with sandbox.lease(IMAGE, run_id=f"bench-{i}") as machine:
            url = machine.url(8000) + "/health"
            while True:
                try:
                    if httpx.get(url, timeout=10).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() - start > 300:
                    raise RuntimeError("the app did not answer after a restore")
                time.sleep(0.05)
            took = time.monotonic() - start
        times.append(took)
        say(f"restore {i + 1}/{runs} to app-ready: {took:.2f} s ({load_line()})")
    return times


_TOOK = re.compile(r"in (\d+(?:\.\d+)?) s$")


def phase_table(events: list[tuple[float, str]], end: float) -> list[tuple[str, float]]:
    """(phase, seconds) of one verification from its timed progress lines: each ``phase: X``
    until the next one (the browse counters ``k/N`` do not start a phase), then the VM's
    checkpoints and reverts (taken inside the deploy and browse phases)."""
    rows: list[tuple[str, float]] = []
    marks = [(t, m.removeprefix("phase: ")) for t, m in events if m.startswith("phase: ")
             and not re.search(r" [1-9]\d*/\d+$", m)]
    for (t, name), (t_next, _) in zip(marks, [*marks[1:], (end, "")], strict=True):
        rows.append((re.sub(r" 0/\d+$", "", name), t_next - t))
    checkpoints = [float(m.group(1)) for _, line in events
                   if "checkpoint of the deployed VM" in line and (m := _TOOK.search(line))]
    reverts = [float(m.group(1)) for _, line in events
               if "VM reverted to the deployed state" in line and (m := _TOOK.search(line))]
    rows.append((f"  checkpoints ({len(checkpoints)}), total", sum(checkpoints)))
    rows.append((f"  reverts ({len(reverts)}), total", sum(reverts)))
    if reverts:
        rows.append(("  revert, median", statistics.median(reverts)))
    return rows


def measure_verify(settings: Settings, db: Database, work: Path, change_id: str) -> tuple[float, str]:
    """One whole VM verification through the pipeline; (seconds, verdict status). Prints its
    per-phase table (reverting the VM before each flow × viewport included)."""
    cases = {c.id: c for c in load_manifest(CHANGES_DIR)}
    case = cases[change_id]
    base, head = materialize_repo(SHOP_DIR, CHANGES_DIR / case.patch, work / "repo")
    change = ChangeInput(run_id=f"bench{os.getpid()}", mode="repo", repo=str(work / "repo"),
                         base_rev=base, head_rev=head, title=f"benchmark: {change_id}")
    start = time.monotonic()
    events: list[tuple[float, str]] = []

    def progress(message: str) -> None:
        events.append((time.monotonic() - start, message))
        say(f"  verify: {message}")

    verdict = run_change(change, job_deps(settings, db), Lines(progress))
    took = time.monotonic() - start
    say(f"verify {change_id}: {verdict.status} in {took:.1f} s (expected {case.expected})")
    print(f"verify phases ({change_id}):")
    for name, seconds in phase_table(events, took):
        print(f"  {name:<32} {seconds:7.2f} s")
    return took, str(verdict.status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vm")
    parser.add_argument("--runs", type=int, default=5, help="restores to time (median)")
    parser.add_argument("--change", default="copy-change-button", help="example change to verify")
    parser.add_argument("--no-verify", action="store_true", help="skip the pipeline run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="diffie-bench-vm-") as tmp:
        work = Path(tmp)
        settings = Settings(data_dir=work / "data", database_url="", vm_images_dir=REPO / "vm_images",
                            vm_slots=max(1, Settings().vm_slots))
        settings.ensure_dirs()
        ensure_daemons(settings.libvirt_uri)
        say(f"domain type {choose_domain_type(settings.vm_domain_type)}; {load_line()}")
        info = build_image(settings, IMAGE, progress=lambda line: say(f"image: {line}"))
        db = Database(settings.resolved_database_url())
        Base.metadata.create_all(db.engine)
        cold = measure_cold_boot(settings, info)
        restores = measure_restore(LibvirtSandbox(settings, db), args.runs)
        median = statistics.median(restores)
        verify = float("nan")
        if not args.no_verify:
            verify, _status = measure_verify(settings, db, work, args.change)
        db.dispose()
    say(f"restores: {', '.join(f'{t:.2f}' for t in restores)}; image build cold boot "
        f"{info.cold_boot_s} s")
    print(f"cold boot to ready: {cold:.2f} s")
    print(f"restore to app-ready (median of {len(restores)}): {median:.2f} s")
    print(f"speedup: {cold / median:.1f}x")
    print(f"verify (base + head, {args.change}): {verify:.1f} s")
    print(f"vm: cold_boot_s={cold:.2f} restore_median_s={median:.2f} speedup={cold / median:.1f} "
          f"verify_s={verify:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
