"""``python -m benchmarks.scale``: how the cost of one VM verification grows with the number of
flow × viewport pairs in its spec, and how much memory the worker and its browsers take.

For each size (default 1, 4, 16 and 32 pairs) the sample shop gets a spec made of its own four
flows (home, product, signin, account) repeated in that order under new names, at both
viewports (the 1-pair spec: ``home`` at desktop only), and a no-op change of it (a comment,
``noop-comment``) is verified end to end exactly as a user runs it: ``diffie verify --repo …
--wait --json`` with the embedded worker, base and head in their VMs. Every run must pass: a
finding on a no-op change is a false finding, and the benchmark fails on it.

While each run goes, the process tree of the CLI (its embedded worker, the browsers it starts;
not the VMs, which libvirt runs) is sampled every 0.25 s from ``/proc``: the memory of its
Python processes and of its Chromium processes.

The last line is machine-readable::

    scale: pairs=1:<s> 4:<s> 16:<s> 32:<s> marginal_s_per_pair=<a>:<b>:<c>
        peak_rss_mb=worker:<n>,chromium:<n> peak_pss_mb=worker:<n>,chromium:<n>

(one line). Memory is the peak of each sum over the run; RSS counts a page shared between
Chromium's processes once in each, PSS splits it between them.

``marginal_s_per_pair`` is the cost of each added pair between consecutive sizes
((t(n2) - t(n1)) / (n2 - n1)).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.vm import load_line, phase_table, run_verify, say
from examples.corpus import CHANGES_DIR, SHOP_DIR, load_manifest, materialize_repo

SIZES = (1, 4, 16, 32)
CYCLE = ("home", "product", "signin", "account")
NOOP = "noop-comment"


def scaled_spec(pairs: int) -> dict[str, Any]:
    """The shop's spec with ``pairs`` flow × viewport pairs (1, or an even number): its flows
    in their order, repeated under new names (``home-2``, …) with their screenshots renamed."""
    spec: dict[str, Any] = yaml.safe_load((SHOP_DIR / ".diffie.yml").read_text(encoding="utf-8"))
    if pairs < 1 or (pairs > 1 and pairs % 2):
        raise SystemExit(f"--sizes: {pairs} pairs; use 1 or an even number (2 viewports)")
    flows = {flow["name"]: flow for flow in spec["flows"]}
    if pairs == 1:
        spec["viewports"] = {"desktop": spec["viewports"]["desktop"]}
    count = max(1, pairs // len(spec["viewports"]))
    scaled = []
    for i in range(count):
        flow = copy.deepcopy(flows[CYCLE[i % len(CYCLE)]])
        round_ = i // len(CYCLE)
        if round_:
            suffix = f"-{round_ + 1}"
            flow["name"] += suffix
            for step in flow["steps"]:
                if isinstance(step, dict) and "screenshot" in step:
                    step["screenshot"] = f"{step['screenshot']}{suffix}"
        scaled.append(flow)
    spec["flows"] = scaled
    return spec


@dataclass
class Peaks:
    """Peak memory (MiB) of a process tree by kind: resident (RSS, shared pages counted in
    every process that maps them) and proportional (PSS, shared pages split between them)."""

    worker_rss: float = 0.0
    chromium_rss: float = 0.0
    worker_pss: float = 0.0
    chromium_pss: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _kb(text: str, key: str) -> float:
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return 0.0


def _memory(pid: int) -> tuple[str, float, float]:
    """(name, RSS MiB, PSS MiB) of one process; ("", 0, 0) once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return "", 0.0, 0.0
    name = status.split("\n", 1)[0].removeprefix("Name:").strip()
    return name, _kb(status, "VmRSS:"), _kb(rollup, "Pss:")


def sample_tree(root: int, peaks: Peaks) -> None:
    """Every 0.25 s until ``peaks.stop``: the memory of ``root``'s Python processes and of its
    Chromium processes, each summed over the tree; keeps the peak of each sum."""
    while not peaks.stop.wait(0.25):
        tree = _children()
        todo = [root]
        sums = {"worker": [0.0, 0.0], "chromium": [0.0, 0.0]}
        while todo:
            pid = todo.pop()
            todo.extend(tree.get(pid, []))
            name, rss, pss = _memory(pid)
            kind = "chromium" if "chrom" in name.lower() else \
                "worker" if name.startswith(("python", "diffie")) else None
            if kind:
                sums[kind][0] += rss
                sums[kind][1] += pss
        peaks.worker_rss = max(peaks.worker_rss, sums["worker"][0])
        peaks.worker_pss = max(peaks.worker_pss, sums["worker"][1])
        peaks.chromium_rss = max(peaks.chromium_rss, sums["chromium"][0])
        peaks.chromium_pss = max(peaks.chromium_pss, sums["chromium"][1])


def measure(pairs: int, work: Path, data_dir: Path) -> tuple[float, Peaks]:
    app = work / f"app-{pairs}"
    shutil.copytree(SHOP_DIR, app, ignore=shutil.ignore_patterns("changes", "__pycache__"))
    (app / ".diffie.yml").write_text(yaml.safe_dump(scaled_spec(pairs), sort_keys=False),
                                     encoding="utf-8")
    case = {c.id: c for c in load_manifest(CHANGES_DIR)}[NOOP]
    repo = work / f"repo-{pairs}"
    base, head = materialize_repo(app, CHANGES_DIR / case.patch, repo)
    peaks = Peaks()

    def watch(process: subprocess.Popen[str]) -> None:
        threading.Thread(target=sample_tree, args=(process.pid, peaks), daemon=True).start()

    say(f"verify a no-op change with {pairs} flow × viewport pair(s) ({load_line()})")
    try:
        took, verdict, events = run_verify(data_dir, repo, base, head,
                                           f"benchmark: scale {pairs}", watch=watch)
    finally:
        peaks.stop.set()
    status = verdict.get("status")
    say(f"{pairs} pair(s): {status} in {took:.1f} s; peak RSS (PSS) worker "
        f"{peaks.worker_rss:.0f} ({peaks.worker_pss:.0f}) MiB, Chromium {peaks.chromium_rss:.0f} "
        f"({peaks.chromium_pss:.0f}) MiB ({load_line()})")
    print(f"phases at {pairs} pair(s) ({status}):")
    for name, _begin, seconds in phase_table(events, events[-1][0] if events else took):
        print(f"  {name:<32} {seconds:6.2f}s")
    if status != "pass":
        summary = verdict.get("summary") or verdict.get("reason") or ""
        raise SystemExit(f"the no-op change at {pairs} pair(s) gave '{status}', not pass: "
                         f"{str(summary)[:500]}")
    return took, peaks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale")
    parser.add_argument("--sizes", default=":".join(map(str, SIZES)),
                        help="flow × viewport pair counts, colon-separated (1 or even)")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(":")]
    except ValueError:
        raise SystemExit(f"--sizes {args.sizes!r}: numbers separated by ':'") from None
    results: list[tuple[int, float, Peaks]] = []
    with tempfile.TemporaryDirectory(prefix="diffie-bench-scale-") as tmp:
        work = Path(tmp)
        data_dir = work / "data"
        for pairs in sizes:
            took, peaks = measure(pairs, work, data_dir)
            results.append((pairs, took, peaks))
    marginal = [(t2 - t1) / (n2 - n1) for (n1, t1, _), (n2, t2, _) in zip(results, results[1:],
                                                                         strict=False)]
    peak = {attr: max(getattr(p, attr) for _, _, p in results)
            for attr in ("worker_rss", "chromium_rss", "worker_pss", "chromium_pss")}
    for (n1, _, _), (n2, _, _), m in zip(results, results[1:], marginal, strict=False):
        print(f"each pair from {n1} to {n2}: {m:.2f} s")
    print(f"peak memory: worker RSS {peak['worker_rss']:.0f} MiB (PSS {peak['worker_pss']:.0f}), "
          f"Chromium RSS {peak['chromium_rss']:.0f} MiB (PSS {peak['chromium_pss']:.0f}); RSS "
          "counts pages shared between Chromium's processes once per process")
    print("scale: pairs=" + " ".join(f"{n}:{t:.1f}" for n, t, _ in results)
          + " marginal_s_per_pair=" + ":".join(f"{m:.2f}" for m in marginal)
          + f" peak_rss_mb=worker:{peak['worker_rss']:.0f},chromium:{peak['chromium_rss']:.0f}"
          + f" peak_pss_mb=worker:{peak['worker_pss']:.0f},chromium:{peak['chromium_pss']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
