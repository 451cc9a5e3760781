"""``diffie bench corpus``: verify every change of a corpus in the VM sandbox and score the
verdicts against the corpus manifest.

Each change is materialised as a git repository (base commit, then the patch) in a temporary
directory and verified exactly as a user would with ``diffie verify --repo … --wait``: submitted
to the queue (an embedded worker is started when none is running) and judged in VMs. The
corpus is ``examples/shop/changes/`` by default; ``--changes DIR`` takes any folder holding a
``manifest.yml`` in the same format and its patches, which apply to ``examples/shop/``
(``git apply``, paths relative to ``examples/shop/``, as in the bundled corpus).

Scoring (pure functions, :func:`score_run` and :func:`summarise`):

- a regression is *caught* when the verdict's status is the expected one and every required
  kind is among its findings; a regression that is flagged otherwise is a *wrong kind*; one that
  passes is *missed*;
- findings outside a change's ``flows``/``viewports`` (when the manifest restricts them) are
  *false findings*; so is every finding on a change expected to ``pass`` (no-op and noise);
- no-op and noise changes run ``--repeats`` times (default 3), regressions once.

``--concurrency N`` runs N changes at once, each taken by a worker process of its own
(``diffie worker --pool solo``) and sharing the host's VM slots, and the verdicts must be
the same; every run prints ``throughput: concurrency=<n> runs=<n> wall_s=<s>
changes_per_hour=<n>``.

stdout gets a table (change, expected, got, findings, seconds) and a summary whose last line is::

    corpus: caught=<n>/<regressions> wrong_kind=<n> false_findings=<n> runs=<n> seconds=<total>

Exit code 0 when every regression was caught with the right kind, no finding was false and no
run ended in error; 1 otherwise; 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from diffie import run_store, submit
from diffie.app_context import AppContext
from diffie.composition import build_context
from diffie.errors import DiffieError
from examples.corpus import CHANGES_DIR, ChangeCase, load_manifest, materialize_repo
from workers.embedded import EmbeddedWorker

Outcome = Literal["caught", "wrong_kind", "missed", "pass", "false_finding", "error"]
DEFAULT_REPEATS = 3


@dataclass(frozen=True)
class FoundItem:
    """One finding of a verdict, as much of it as scoring needs."""

    kind: str
    flow: str | None = None
    viewport: str | None = None
    pre_existing: bool = False
    message: str = ""
    cause: str = ""                 # a visual finding's explanation in DOM terms


@dataclass(frozen=True)
class RunResult:
    """What one verification of one change gave."""

    change: str
    repeat: int                     # 1-based
    got: str                        # verdict status; "error" when the run did not judge
    findings: tuple[FoundItem, ...] = ()
    seconds: float = 0.0
    run_id: str | None = None
    reason: str | None = None       # why the run is "error"


@dataclass(frozen=True)
class Score:
    outcome: Outcome
    false_findings: int = 0
    missing_kinds: tuple[str, ...] = ()


@dataclass
class Summary:
    regressions: int = 0            # regression runs
    caught: int = 0
    wrong_kind: int = 0
    missed: int = 0
    errors: int = 0                 # runs that ended in error (any category)
    false_findings: int = 0         # findings, not runs
    false_runs: int = 0             # pass-expected runs with at least one finding
    pass_runs: int = 0              # no-op/noise runs
    runs: int = 0
    seconds: float = 0.0
    explained: int = 0              # visual regression runs whose cause is named
    to_explain: int = 0             # visual regression runs (manifest expect_cause)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.caught == self.regressions and self.false_findings == 0
                and self.errors == 0)

    def last_line(self) -> str:
        return (f"corpus: caught={self.caught}/{self.regressions} wrong_kind={self.wrong_kind} "
                f"false_findings={self.false_findings} runs={self.runs} "
                f"seconds={self.seconds:.0f}")


# --- scoring (pure) -------------------------------------------------------------------------

def findings_from_verdict(verdict: dict[str, Any] | None) -> tuple[FoundItem, ...]:
    return tuple(FoundItem(kind=str(f.get("kind")), flow=f.get("flow"), viewport=f.get("viewport"),
                           pre_existing=bool(f.get("pre_existing")),
                           message=str(f.get("message", ""))[:300],
                           cause=str((f.get("details") or {}).get("cause") or "")[:1000])
                 for f in (verdict or {}).get("findings") or [])


def names_cause(case: ChangeCase, result: RunResult) -> bool:
    """Whether one visual finding's explanation has every word of ``expect_cause``."""
    return any(all(word in f.cause for word in case.expect_cause)
               for f in result.findings if f.kind == "visual_change" and f.cause)


def out_of_scope(case: ChangeCase, item: FoundItem) -> bool:
    """A finding in a flow or viewport the manifest does not allow for this change."""
    if case.flows is not None and item.flow not in case.flows:
        return True
    return case.viewports is not None and item.viewport not in case.viewports


def score_run(case: ChangeCase, result: RunResult) -> Score:
    """Judge one run of one change against its manifest entry."""
    if case.expected == "pass":
        false = len(result.findings)
        if false:
            return Score("false_finding", false)
        return Score("pass" if result.got == "pass" else "error")
    false = sum(1 for f in result.findings if out_of_scope(case, f))
    kinds = {f.kind for f in result.findings if not f.pre_existing}
    missing = tuple(k for k in case.kinds if k not in kinds)
    if result.got == case.expected and not missing:
        return Score("caught", false)
    if result.got == "error" and not result.findings:
        return Score("error", false, missing)
    if result.got == "pass":
        return Score("missed", false, missing)
    return Score("wrong_kind", false, missing)


def summarise(cases: Iterable[ChangeCase], results: Iterable[RunResult]) -> Summary:
    by_id = {c.id: c for c in cases}
    summary = Summary()
    for result in results:
        case = by_id[result.change]
        score = score_run(case, result)
        summary.runs += 1
        summary.seconds += result.seconds
        summary.false_findings += score.false_findings
        if result.got == "error" and case.expected != "error":
            summary.errors += 1
        label = f"{result.change}" + (f" #{result.repeat}" if not case.is_regression else "")
        if case.is_regression and case.expect_cause:
            summary.to_explain += 1
            if names_cause(case, result):
                summary.explained += 1
            else:
                said = next((f.cause for f in result.findings if f.cause), "no explanation")
                summary.problems.append(f"{label}: cause not named (want "
                                        f"{' + '.join(case.expect_cause)}): {said[:160]}")
        if case.is_regression:
            summary.regressions += 1
            if score.outcome == "caught":
                summary.caught += 1
            elif score.outcome == "wrong_kind":
                summary.wrong_kind += 1
                summary.problems.append(
                    f"{label}: wrong kind — expected {case.expected} {list(case.kinds)}, got "
                    f"{result.got} {sorted({f.kind for f in result.findings})}")
            elif score.outcome == "missed":
                summary.missed += 1
                summary.problems.append(f"{label}: missed — the verdict is pass")
            else:
                summary.problems.append(f"{label}: error — {result.reason or 'no verdict'}")
            if score.false_findings:
                summary.problems.append(
                    f"{label}: {score.false_findings} finding(s) outside flows={case.flows} "
                    f"viewports={case.viewports}")
        else:
            summary.pass_runs += 1
            if score.outcome == "false_finding":
                summary.false_runs += 1
                summary.problems.append(
                    f"{label}: {score.false_findings} false finding(s): "
                    + "; ".join(_describe(f) for f in result.findings[:5]))
            elif score.outcome == "error":
                summary.problems.append(f"{label}: error — {result.reason or result.got}")
    return summary


def _describe(item: FoundItem) -> str:
    where = "@".join(x for x in (item.flow, item.viewport) if x)
    return f"{item.kind}" + (f" {where}" if where else "") + (
        f": {item.message[:120]}" if item.message else "")


def findings_cell(result: RunResult) -> str:
    if not result.findings:
        return "0"
    counts = Counter(f.kind for f in result.findings)
    return f"{len(result.findings)}: " + ", ".join(
        f"{kind}×{n}" if n > 1 else kind for kind, n in sorted(counts.items()))


def render_table(cases: Iterable[ChangeCase], results: Iterable[RunResult]) -> str:
    by_id = {c.id: c for c in cases}
    rows = [("change", "expected", "got", "findings", "seconds", "score")]
    for r in results:
        case = by_id[r.change]
        score = score_run(case, r)
        name = r.change if case.is_regression else f"{r.change} #{r.repeat}"
        expected = case.expected + (f" [{','.join(case.kinds)}]" if case.kinds else "")
        mark = score.outcome + (f" (+{score.false_findings} false)"
                                if score.false_findings and score.outcome != "false_finding"
                                else "")
        rows.append((name, expected, r.got, findings_cell(r), f"{r.seconds:.0f}", mark))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[j]) if j != 4 else cell.rjust(widths[j])
                               for j, cell in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_summary(summary: Summary) -> str:
    lines = [
        f"regressions caught with the right kind: {summary.caught}/{summary.regressions}"
        f" (wrong kind {summary.wrong_kind}, missed {summary.missed})",
        f"no-op/noise runs with findings: {summary.false_runs}/{summary.pass_runs}",
        f"false findings: {summary.false_findings}",
        f"runs in error: {summary.errors}",
    ]
    if summary.to_explain:
        lines.append(f"explain: named={summary.explained}/{summary.to_explain}")
    lines += [f"  - {p}" for p in summary.problems]
    lines.append(summary.last_line())
    return "\n".join(lines)


def plan(cases: list[ChangeCase], *, repeats: int,
         only: list[str] | None = None) -> list[tuple[ChangeCase, int]]:
    """(change, repeat) pairs: regressions once, no-op/noise ``repeats`` times; every change
    once in manifest order first, then the second runs, and so on (an interrupted benchmark
    has still seen every change)."""
    if only:
        known = {c.id for c in cases}
        unknown = [i for i in only if i not in known]
        if unknown:
            raise ValueError(f"unknown change id(s): {', '.join(unknown)}")
        cases = [c for c in cases if c.id in only]
    return [(c, n) for n in range(1, max(repeats, 1) + 1) for c in cases
            if n == 1 or not c.is_regression]


# --- running (VMs, through the queue) -------------------------------------------------------

def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def progress_line(line: str) -> None:
    """A line of the run's progress, as ``diffie verify --wait`` prints it."""
    print(f"[diffie] {line}", file=sys.stderr, flush=True)


def verify_case(ctx: AppContext, case: ChangeCase, repeat: int, *, app_dir: Path,
                timeout_s: float, label: bool = False) -> RunResult:
    """Materialise the change in a temporary git repository and verify it like
    ``diffie verify --repo DIR --base B --head H --wait`` (the queue; a worker must be live)."""
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f"diffie-bench-{case.id}-"))
    run_id: str | None = None
    try:
        repo = tmp / "repo"
        base, head = materialize_repo(app_dir, case.patch_path, repo)
        run_id = submit.submit_repo(ctx, repo=str(repo), base=base, head=head,
                                    title=f"bench {case.id} #{repeat}")
        ctx.enqueue(run_id)
        say(f"{case.id} #{repeat}: queued run {run_id}")
        tag = f"{case.id} #{repeat}: " if label else ""     # runs at once: whose line it is
        snap = submit.wait_for(ctx, run_id, timeout_s=timeout_s,
                               say=lambda line: progress_line(tag + line))
        verdict = snap.get("verdict") or {}
        got = snap.get("verdict_status") or "error"
        return RunResult(change=case.id, repeat=repeat, got=got,
                         findings=findings_from_verdict(verdict),
                         seconds=time.monotonic() - started, run_id=run_id,
                         reason=verdict.get("reason") or snap.get("reason"))
    except DiffieError as exc:
        return RunResult(change=case.id, repeat=repeat, got="error",
                         seconds=time.monotonic() - started, run_id=run_id, reason=str(exc))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_corpus(ctx: AppContext, todo: list[tuple[ChangeCase, int]], *, app_dir: Path,
               timeout_s: float,
               on_result: Callable[[ChangeCase, RunResult], None] | None = None,
               concurrency: int = 1) -> list[RunResult]:
    """Verify each (change, repeat). One at a time (``concurrency`` 1) with the queue's
    embedded defaults: a worker in this process (always: a worker that died a moment ago still
    looks live for a few heartbeats, and the benchmark would wait for it forever). With
    ``concurrency`` N > 1: N worker processes (``diffie worker``) and N runs in flight."""
    if concurrency > 1:
        return run_concurrently(ctx, todo, app_dir=app_dir, timeout_s=timeout_s,
                                on_result=on_result, concurrency=concurrency)
    say("starting a worker in this process")
    embedded = EmbeddedWorker(ctx.celery).start()
    results: list[RunResult] = []
    try:
        for i, (case, repeat) in enumerate(todo, 1):
            say(f"[{i}/{len(todo)}] {case.id} #{repeat} ({case.category}, "
                f"expected {case.expected})")
            result = verify_case(ctx, case, repeat, app_dir=app_dir, timeout_s=timeout_s)
            results.append(result)
            if on_result is not None:
                on_result(case, result)
    finally:
        embedded.stop(timeout=30)
    return results


WORKER_START_S = 120.0
WORKER_STOP_S = 60.0


def start_workers(ctx: AppContext, count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` ``diffie worker --pool solo`` processes (one run at a time each), with this
    process's settings; returns once each one beats in the workers table. Their output goes
    to ``<data dir>/bench-worker-<i>.log``."""
    command = [sys.executable, "-m", "diffie.cli", "worker", "--takes", "runs", "--pool", "solo",
               "--loglevel", "warning"]
    before = set(run_store.live_workers(ctx.db, within_s=ctx.settings.heartbeat_s * 3 + 5))
    procs = []
    for i in range(count):
        log_path = ctx.settings.data_dir / f"bench-worker-{i + 1}.log"
        with open(log_path, "wb") as log:
            procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                          cwd=Path(__file__).resolve().parent.parent))
    deadline = time.monotonic() + WORKER_START_S
    while True:
        live = set(run_store.live_workers(ctx.db, within_s=ctx.settings.heartbeat_s * 3 + 5))
        if len(live - before) >= count:
            return procs
        dead = [i + 1 for i, p in enumerate(procs) if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            stop_workers(procs)
            raise DiffieError(f"worker process(es) {dead or 'all'} did not start; see "
                              f"{ctx.settings.data_dir}/bench-worker-<i>.log")
        time.sleep(0.5)


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    """Warm shutdown (SIGTERM: a run in progress finishes), then kill what is left."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + WORKER_STOP_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_concurrently(ctx: AppContext, todo: list[tuple[ChangeCase, int]], *, app_dir: Path,
                     timeout_s: float, concurrency: int,
                     on_result: Callable[[ChangeCase, RunResult], None] | None = None
                     ) -> list[RunResult]:
    """``concurrency`` worker processes and as many runs in flight, in plan order; results
    as they finish. Submitting threads are daemons: an interrupt does not wait for them."""
    say(f"starting {concurrency} worker processes")
    procs = start_workers(ctx, concurrency)
    pending: queue.Queue[tuple[int, ChangeCase, int]] = queue.Queue()
    for i, (case, repeat) in enumerate(todo, 1):
        pending.put((i, case, repeat))
    finished: queue.Queue[tuple[ChangeCase, RunResult]] = queue.Queue()

    def submitter() -> None:
        while True:
            try:
                i, case, repeat = pending.get_nowait()
            except queue.Empty:
                return
            say(f"[{i}/{len(todo)}] {case.id} #{repeat} ({case.category}, "
                f"expected {case.expected})")
            try:
                result = verify_case(ctx, case, repeat, app_dir=app_dir, timeout_s=timeout_s,
                                     label=True)
            except Exception as exc:          # a result for every run, whatever went wrong
                result = RunResult(change=case.id, repeat=repeat, got="error",
                                   reason=f"benchmark: {type(exc).__name__}: {exc}")
            finished.put((case, result))

    threads = [threading.Thread(target=submitter, name=f"bench-submit-{n}", daemon=True)
               for n in range(concurrency)]
    results: list[RunResult] = []
    try:
        for thread in threads:
            thread.start()
        while len(results) < len(todo):
            case, result = finished.get()
            results.append(result)
            if on_result is not None:
                on_result(case, result)
    finally:
        stop_workers(procs)
    return results


def write_json(path: Path, cases: list[ChangeCase], results: list[RunResult],
               summary: Summary, settings: dict[str, Any]) -> None:
    by_id = {c.id: c for c in cases}
    data = {
        "settings": settings,
        "runs": [{**asdict(r), "expected": by_id[r.change].expected,
                  "kinds": list(by_id[r.change].kinds), "category": by_id[r.change].category,
                  "score": asdict(score_run(by_id[r.change], r))} for r in results],
        "summary": {k: v for k, v in asdict(summary).items()},
        "last_line": summary.last_line(),
    }
    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")


RunCorpus = Callable[..., list[RunResult]]


def cmd_bench_corpus(args: argparse.Namespace, run: RunCorpus = run_corpus) -> int:
    """``diffie bench corpus``; ``run`` verifies the planned runs (:func:`run_corpus`)."""
    changes = Path(args.changes)
    cases = load_manifest(changes)
    only = [x.strip() for x in (args.only or "").split(",") if x.strip()] or None
    try:
        todo = plan(cases, repeats=args.repeats, only=only)
    except ValueError as exc:
        say(f"error: {exc}")
        return 2
    regressions = sum(1 for c, _ in todo if c.is_regression)
    say(f"{len(todo)} run(s) of {len({c.id for c, _ in todo})} change(s) from "
        f"{changes / 'manifest.yml'}: {regressions} regression(s) once, no-op/noise "
        f"×{args.repeats}")
    ctx = build_context()
    results: list[RunResult] = []
    json_out = Path(args.json_out) if args.json_out else None
    settings = {"changes": str(changes.resolve()), "repeats": args.repeats, "only": only,
                "data_dir": str(ctx.settings.data_dir.resolve()),
                "noise_floor": ctx.settings.noise_floor}

    def on_result(case: ChangeCase, result: RunResult) -> None:
        results.append(result)
        score = score_run(case, result)
        say(f"{case.id} #{result.repeat}: {result.got} ({findings_cell(result)}) in "
            f"{result.seconds:.0f}s → {score.outcome}"
            + (f"; report {(ctx.settings.artifacts_dir / result.run_id).resolve() / 'index.html'}"
               if result.run_id else "")
            + (f"; {result.reason}" if result.reason else ""))
        if json_out is not None:      # partial results survive an interrupted benchmark
            write_json(json_out, cases, results, summarise(cases, results), settings)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)    # `kill PID`: report what finished
    started = time.monotonic()
    try:
        app_dir = Path(args.app) if args.app else changes.resolve().parent
        run(ctx, todo, app_dir=app_dir, timeout_s=args.timeout, on_result=on_result,
            **({"concurrency": args.concurrency} if args.concurrency > 1 else {}))
    except KeyboardInterrupt:
        say(f"interrupted after {len(results)} of {len(todo)} run(s)")
    finally:
        signal.signal(signal.SIGTERM, previous)
        ctx.close()
    if len(results) < len(todo):
        print(f"INCOMPLETE: {len(results)} of {len(todo)} planned run(s) finished "
              "(interrupted); the summary covers those only")
    wall_s = time.monotonic() - started
    summary = summarise(cases, results)
    print(render_table(cases, results))
    print()
    print(throughput_line(len(results), wall_s, args.concurrency))
    print(render_summary(summary), flush=True)
    if json_out is not None:
        write_json(json_out, cases, results, summary, settings)
    return 0 if summary.ok and len(results) == len(todo) else 1


def throughput_line(runs: int, wall_s: float, concurrency: int) -> str:
    """``throughput: concurrency=<n> runs=<n> wall_s=<s> changes_per_hour=<n>``."""
    per_hour = runs * 3600 / wall_s if wall_s > 0 else 0.0
    return (f"throughput: concurrency={concurrency} runs={runs} wall_s={wall_s:.0f} "
            f"changes_per_hour={per_hour:.1f}")


def add_parser(sub: Any) -> None:
    """Register ``bench corpus`` on the ``diffie`` command's subparsers."""
    s = sub.add_parser("bench", help="benchmarks of verdict quality")
    bench_sub = s.add_subparsers(dest="bench_command", required=True)
    c = bench_sub.add_parser(
        "corpus", help="verify every change of a corpus in VMs and score the verdicts",
        description="Verify each change of a corpus (patches + manifest.yml) in the VM sandbox "
        "and compare each verdict with the manifest. Patches apply to the app folder above "
        "--changes (paths relative to it, as git apply takes them).")
    c.add_argument("--changes", default=str(CHANGES_DIR),
                   help="folder with manifest.yml and its patches (default: the shop corpus); "
                   "patches are relative to the app, by default the folder above it "
                   "(examples/shop/changes -> examples/shop)")
    c.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                   help="runs of each no-op and noise change (regressions run once)")
    c.add_argument("--only", default=None, help="comma-separated change ids")
    c.add_argument("--json-out", default=None, help="write every run and the summary as JSON")
    c.add_argument("--app", default=None, help="the app the patches apply to (default: the "
                   "parent folder of --changes)")
    c.add_argument("--timeout", type=float, default=1800.0, help="seconds per run at most")
    c.add_argument("--concurrency", type=int, default=1,
                   help="runs at once, each taken by its own worker process (diffie worker "
                   "--pool solo), sharing the host's VM slots; default 1: one run at a time "
                   "with a worker in this process")
    c.set_defaults(func=cmd_bench_corpus)
