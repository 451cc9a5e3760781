"""``python -m benchmarks.vm``: cold boot vs snapshot restore of the shop image, and one whole
VM verification of the sample app (base + head), measured in one run.

- cold boot: a fresh boot of the image's golden disk (first boot: seed, services) until the
  readiness marker and ``/health`` answer over the forwarded port;
- restore: ``LibvirtSandbox.lease`` (slot lease, overlay, restore, clock set) until ``/health``
  answers, median of ``--runs`` (5);
- verify: ``diffie verify --wait --json`` of an example change (default
  ``layout-shift-banner``) and of a no-op change (``noop-comment``), end to end through the
  queue and the embedded worker, each with its per-phase table: checkout, image, deploy and
  browse of each side (base and head side by side when a second VM slot is free), the noise
  floor's second head render, compare, report; and the VM's checkpoint after each deploy and
  its reverts before each flow × viewport (inside those phases).

The last line is machine-readable::

    vm: cold_boot_s=<s> restore_median_s=<s> speedup=<cold/restore> verify_s=<s> verify_noop_s=<s>
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from diffie.config import Settings
from diffie.db import Database
from diffie.models import Base
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
_LINE = re.compile(r"^\[\s*(\d+(?:\.\d+)?)s\] (.*)$")
_COUNT = re.compile(r"^(browse \S+) (\d+)/(\d+)$")


def read_progress(path: Path) -> list[tuple[float, str]]:
    """(seconds since the run started, message) of each line of a run's ``progress.log``."""
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if m := _LINE.match(line):
            events.append((float(m.group(1)), m.group(2)))
    return events


def phase_table(events: list[tuple[float, str]], end: float) -> list[tuple[str, float, float]]:
    """(phase, start, seconds) of one verification from its timed progress lines. Base and
    head may run at once, so each span is measured within its own side: ``deploy X`` until
    ``browse X 0/N`` (lease, restore, clock, copy, deploy commands, ready, checkpoint),
    ``browse X 0/N`` until ``N/N``; the VM's checkpoints and reverts (inside those) last."""
    marks: dict[str, float] = {}
    for t, message in events:
        if not message.startswith("phase: "):
            continue
        name = message.removeprefix("phase: ")
        if m := _COUNT.match(name):
            key = f"{m.group(1)} {'start' if m.group(2) == '0' else 'end'}"
            marks[key] = t if key.endswith("start") else max(t, marks.get(key, t))
        else:
            marks.setdefault(name, t)
    spans = [("checkout", "checkout", "image"), ("image", "image", "deploy base"),
             ("deploy base (lease … ready)", "deploy base", "browse base start"),
             ("browse base", "browse base start", "browse base end"),
             ("deploy head (lease … ready)", "deploy head", "browse head start"),
             ("browse head", "browse head start", "browse head end"),
             ("noise floor: head again", "browse head2 start", "browse head2 end"),
             ("compare", "compare", "report"), ("report", "report", "")]
    rows = []
    for label, first, last in spans:
        if first in marks:
            stop = marks.get(last, end) if last else end
            rows.append((label, marks[first], stop - marks[first]))
    checkpoints = [float(m.group(1)) for _, line in events
                   if "checkpoint of the deployed VM" in line and (m := _TOOK.search(line))]
    reverts = [float(m.group(1)) for _, line in events
               if "VM reverted to the deployed state" in line and (m := _TOOK.search(line))]
    rows.append((f"  checkpoints ({len(checkpoints)}), total", float("nan"), sum(checkpoints)))
    rows.append((f"  reverts ({len(reverts)}), total", float("nan"), sum(reverts)))
    if reverts:
        rows.append(("  revert, median", float("nan"), statistics.median(reverts)))
    return rows


def run_verify(data_dir: Path, repo: Path, base: str, head: str, title: str,
               watch: Callable[[subprocess.Popen[str]], None] | None = None,
               ) -> tuple[float, dict[str, Any], list[tuple[float, str]]]:
    """``diffie verify --repo … --wait --json`` in a subprocess on its own data directory, as a
    user runs it. ``watch(process)`` runs while it does (sampling memory, say). Returns the
    wall seconds, the verdict JSON and the run's ``progress.log`` events."""
    env = {**os.environ, "DIFFIE_DATA_DIR": str(data_dir), "DIFFIE_DATABASE_URL": "",
           "DIFFIE_BROKER_URL": "", "DIFFIE_VM_IMAGES_DIR": str(REPO / "vm_images")}
    start = time.monotonic()
    with subprocess.Popen([sys.executable, "-m", "diffie.cli", "verify", "--repo", str(repo),
                           "--base", base, "--head", head, "--wait", "--json",
                           "--title", title], env=env, cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        if watch is not None:
            watch(process)
        stdout, stderr = process.communicate()
    took = time.monotonic() - start
    try:
        verdict = json.loads(stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"diffie verify ({title}) printed no verdict (exit "
                         f"{process.returncode}):\n{stderr[-3000:]}") from None
    events = read_progress(data_dir / "runs" / str(verdict["run_id"]) / "progress.log")
    return took, verdict, events


def measure_verify(data_dir: Path, work: Path, change_id: str) -> tuple[float, str]:
    """One whole ``diffie verify --wait --json`` of an example change, as a user runs it: the
    CLI records the run, queues it, starts its embedded worker, which restores the VMs,
    deploys, browses, judges. Returns (wall seconds, verdict status) and prints the run's
    per-phase table from its ``progress.log``."""
    cases = {c.id: c for c in load_manifest(CHANGES_DIR)}
    case = cases[change_id]
    repo = work / f"repo-{change_id}"
    base, head = materialize_repo(SHOP_DIR, CHANGES_DIR / case.patch, repo)
    took, verdict, events = run_verify(data_dir, repo, base, head, f"benchmark: {change_id}")
    status = str(verdict.get("status"))
    run_s = events[-1][0] if events else took
    side_by_side = any("a second VM slot was free" in line for _, line in events)
    say(f"verify {change_id}: {status} in {took:.1f} s (expected {case.expected}; "
        f"{load_line()})")
    print(f"verify phases ({change_id}: {status}, base and head "
          f"{'side by side' if side_by_side else 'one after the other'}):")
    print(f"  {'phase':<32} {'starts':>7}   {'takes':>7}")
    for name, begin, seconds in phase_table(events, run_s):
        starts = "" if begin != begin else f"{begin:6.1f}s"
        print(f"  {name:<32} {starts:>7}   {seconds:6.2f}s")
    print(f"  {'the job (progress.log)':<32} {'':>7}   {run_s:6.2f}s")
    print(f"  {'diffie verify, end to end':<32} {'':>7}   {took:6.2f}s")
    return took, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vm")
    parser.add_argument("--runs", type=int, default=5, help="restores to time (median)")
    parser.add_argument("--change", default="layout-shift-banner", help="example change to verify")
    parser.add_argument("--noop", default="noop-comment", help="example no-op change to verify")
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
        db.dispose()
        verify = verify_noop = float("nan")
        if not args.no_verify:
            cli_data = work / "cli-data"      # the CLI's own store (its schema by migration)
            verify, _status = measure_verify(cli_data, work, args.change)
            verify_noop, _status = measure_verify(cli_data, work, args.noop)
    say(f"restores: {', '.join(f'{t:.2f}' for t in restores)}; image build cold boot "
        f"{info.cold_boot_s} s")
    print(f"cold boot to ready: {cold:.2f} s")
    print(f"restore to app-ready (median of {len(restores)}): {median:.2f} s")
    print(f"speedup: {cold / median:.1f}x")
    print(f"verify (base + head, {args.change}): {verify:.1f} s")
    print(f"verify (base + head, {args.noop}): {verify_noop:.1f} s")
    print(f"vm: cold_boot_s={cold:.2f} restore_median_s={median:.2f} speedup={cold / median:.1f} "
          f"verify_s={verify:.1f} verify_noop_s={verify_noop:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
