"""The one task: ``verify_run(run_id)``. Safe to run twice; any exception ends the run ``error``.

``execute_run`` is the task's body without Celery (tests call it directly):

1. claim the run (queued, or running with a dead worker); anything else: skip;
2. heartbeat it from a thread while the pipeline runs; the :class:`Heartbeat` is the job's
   :class:`~diffie.control.RunControl` (a cancelled run stops at its next phase);
3. record the verdict, its findings and artifacts — or ``error`` with a readable reason.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from diffie import counters, links, run_store
from diffie.app_context import VERIFY_TASK, AppContext
from diffie.artifact_store import StoreError
from diffie.artifacts import ArtifactDir
from diffie.config import Settings
from diffie.control import RunCancelled, RunControl, stamped
from diffie.deps import JobDeps
from diffie.errors import DiffieError
from diffie.logs import run_context
from diffie.pipeline import publish_error, run_change
from diffie.progress import ProgressWriter
from diffie.publishing import PUBLISH_TASK, deliver
from diffie.run_store import ChangeInput
from diffie.verdict import Verdict, error_verdict, internal_error_reason

log = logging.getLogger(__name__)

_contexts: dict[tuple[int, int], AppContext] = {}
_contexts_lock = threading.Lock()


def worker_context(settings: Settings, build: Callable[[Settings], AppContext]) -> AppContext:
    """One context per process and Settings (a forked pool child builds its own with ``build``)."""
    key = (os.getpid(), id(settings))
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = build(settings)
            _contexts[key] = ctx
        return ctx


def adopt_context(ctx: AppContext) -> None:
    """Make ``ctx`` the context of workers in this process built from ``ctx.settings`` (an
    embedded worker then shares the API's database, listeners, sources and sandbox)."""
    with _contexts_lock:
        _contexts[(os.getpid(), id(ctx.settings))] = ctx


def worker_identity(nodename: str | None = None) -> str:
    return f"{nodename or socket.gethostname()}/{os.getpid()}/{threading.get_ident() % 100000}"


def time_limit_reason(limit_s: float) -> str:
    return (f"the run took longer than the time limit of {limit_s:g} s "
            f"(DIFFIE_TASK_TIME_LIMIT_S) and was stopped")


class Heartbeat(threading.Thread):
    """Refreshes the run's heartbeat; notices when the run is no longer ours (cancelled); and
    is the run's watchdog: at ``DIFFIE_TASK_TIME_LIMIT_S`` it ends the run ``error`` in the
    database at once (every pool, the embedded worker's included, where Celery's own time
    limits do not apply) and makes the pipeline stop at its next phase."""

    def __init__(self, ctx: AppContext, run_id: str, worker: str) -> None:
        super().__init__(name=f"heartbeat-{run_id[:8]}", daemon=True)
        self.ctx, self.run_id, self.worker = ctx, run_id, worker
        self.lost = threading.Event()
        self.timed_out = threading.Event()
        self.limit_s = float(ctx.settings.task_time_limit_s)
        self.deadline = time.monotonic() + self.limit_s
        self._stop_event = threading.Event()
        self.started = time.monotonic()
        self.progress = ProgressWriter(ctx.db, run_id)
        self._phases: list[tuple[str, float]] = []      # (phase, when it started)
        self._extra: list[tuple[str, float]] = []       # (phase, seconds): timed() ones
        self._pipeline_end: float | None = None

    @property
    def reason(self) -> str:
        return time_limit_reason(self.limit_s)

    def run(self) -> None:
        while True:
            wait = min(self.ctx.settings.heartbeat_s, max(0.0, self.deadline - time.monotonic()))
            if self._stop_event.wait(wait):
                return
            self.progress.flush()
            if time.monotonic() >= self.deadline:
                self._expire()
                return
            try:
                if not run_store.heartbeat(self.ctx.db, self.run_id, self.worker):
                    self.lost.set()
                    return
            except Exception:
                log.exception("heartbeat of run %s failed", self.run_id)

    def _expire(self) -> None:
        verdict = error_verdict(self.run_id, self.reason)
        verdict.report_url = links.report_url(self.ctx.settings, self.run_id)
        try:
            ended = run_store.record_error(self.ctx.db, self.run_id, self.worker, self.reason, verdict)
        except Exception:
            log.exception("run %s: could not record that it timed out", self.run_id)
            return             # Celery's own limit (prefork), or the stale-run recovery, follows
        if ended:
            log.error("run %s: %s", self.run_id, self.reason)
            self.timed_out.set()
            self.ctx.events.finished(self.run_id)
        self.lost.set()

    # --- RunControl (diffie.control): the job's phases are heartbeats and stop points ----

    def timed(self, name: str, seconds: float) -> None:
        """A phase the task itself timed after the pipeline's (which ended before it)."""
        if self._pipeline_end is None:
            self._pipeline_end = time.monotonic() - seconds
        self._extra.append((name, seconds))

    def timings(self) -> list[tuple[str, float]]:
        """(phase, seconds) of each phase so far, and ``run``: the whole run on this worker."""
        now = time.monotonic()
        starts = [start for _, start in self._phases]
        ends = starts[1:] + [self._pipeline_end or now] if starts else []
        out = [(name, end - start) for (name, _), start, end in
               zip(self._phases, starts, ends, strict=True)]
        return out + self._extra + [("run", now - self.started)]

    def _line(self, message: str) -> None:
        self.progress.add(stamped(self.started, message))

    def phase(self, name: str) -> None:
        self._phases.append((name, time.monotonic()))
        self._line(f"phase: {name}")
        if self.lost.is_set() or not run_store.heartbeat(self.ctx.db, self.run_id, self.worker, name):
            self.lost.set()
            raise RunCancelled(f"run {self.run_id} was cancelled or taken over")

    def say(self, message: str) -> None:
        self._line(message)     # for every host (the job's progress.log and log have it too)

    def stop(self) -> None:
        self._stop_event.set()
        self.progress.flush()


def describe(exc: BaseException) -> str:
    """A reason a person can act on: Diffie's own errors as they are, others with their type."""
    if isinstance(exc, SoftTimeLimitExceeded):
        return "the run took longer than the task time limit (DIFFIE_TASK_TIME_LIMIT_S)"
    if isinstance(exc, DiffieError):
        return str(exc) or type(exc).__name__
    text = str(exc).strip()
    return f"internal error: {type(exc).__name__}" + (f": {text}" if text else "")


Job = Callable[[ChangeInput, JobDeps, RunControl], Verdict]


def execute_run(ctx: AppContext, run_id: str, worker: str, job: Job = run_change) -> str:
    """Claim, verify (``job``: the pipeline) and record one run. Returns what happened (for
    logs and tests). Every log record meanwhile names the run (:mod:`diffie.logs`)."""
    with run_context(run_id):
        return _execute_run(ctx, run_id, worker, job)


def _execute_run(ctx: AppContext, run_id: str, worker: str, job: Job) -> str:
    settings = ctx.settings
    outcome = run_store.claim(ctx.db, run_id, worker, stale_after_s=settings.stale_after_s,
                         max_attempts=settings.max_attempts)
    if outcome == "gave_up":
        ctx.events.finished(run_id)
    if outcome != "claimed":
        log.info("run %s not taken: %s", run_id, outcome)
        return outcome
    ctx.events.started(run_id)
    beat = Heartbeat(ctx, run_id, worker)
    beat.start()
    change = None
    try:
        change = run_store.change_input(ctx.db, run_id)
        verdict = job(change, ctx.deps, beat)
        out = ArtifactDir(settings.artifacts_dir / run_id)
        store_artifacts(ctx, out, beat)              # before "done": a done run's files are there
        if not run_store.record_verdict(ctx.db, run_id, worker, verdict, out):
            if beat.timed_out.is_set():
                return _timed_out(ctx, beat, change)
            log.warning("run %s: finished, but it is no longer ours (cancelled?)", run_id)
            return "lost"
        result = verdict.status
    except RunCancelled:
        if beat.timed_out.is_set():
            return _timed_out(ctx, beat, change)
        log.info("run %s stopped: cancelled or taken over", run_id)
        return "cancelled"
    except Exception as exc:
        if beat.timed_out.is_set():
            return _timed_out(ctx, beat, change)
        reason = describe(exc)
        log.error("run %s failed: %s\n%s", run_id, reason, traceback.format_exc())
        # the verdict is public (PR comment, check run, report link): an internal error's text
        # stays in the run record (run.reason), the verdict says where to look
        # (the artifact store's address and error are the operator's business, not the PR's)
        public = reason if isinstance(exc, DiffieError | SoftTimeLimitExceeded) and \
            not isinstance(exc, StoreError) else internal_error_reason(run_id)
        verdict = _error_verdict(ctx, run_id, change, public)
        out = ArtifactDir(settings.artifacts_dir / run_id)
        store_artifacts(ctx, out, beat, best_effort=True)
        run_store.record_error(ctx.db, run_id, worker, reason, verdict, out)
        result = "error"
    except BaseException:
        # Worker shutdown (SystemExit, KeyboardInterrupt): give the run back to the queue.
        run_store.release(ctx.db, run_id, worker)
        raise
    finally:
        beat.stop()
        run_store.record_phases(ctx.db, run_id, beat.timings())
    ctx.events.finished(run_id)
    return result


def store_artifacts(ctx: AppContext, out: ArtifactDir, beat: Heartbeat, *,
                    best_effort: bool = False) -> None:
    """Upload the run's folder to the artifact store (when one is configured), timed as the
    phase ``store``; a store that does not take it fails the run (raises StoreError) unless
    ``best_effort`` (the run already ends ``error``: its own reason comes first)."""
    store = ctx.artifact_store
    if store is None or not out.root.is_dir():
        return
    try:
        sent = store.upload(beat.run_id, out.root)
    except StoreError:
        if not best_effort:
            raise
        log.exception("run %s: its files did not reach the artifact store", beat.run_id)
        return
    beat.timed("store", sent.seconds)
    counters.bump(ctx.db, "artifact_upload", "bytes", sent.bytes)
    counters.bump(ctx.db, "artifact_upload", "files", sent.files)
    log.info("run %s: %d file(s), %d bytes to the artifact store in %.2f s", beat.run_id,
             sent.files, sent.bytes, sent.seconds)


def _error_verdict(ctx: AppContext, run_id: str, change: ChangeInput | None,
                   reason: str) -> Verdict:
    """The ``error`` verdict of a run that could not finish: with its report when the change
    was read (:func:`diffie.pipeline.publish_error`), else the verdict alone."""
    if change is None:
        return error_verdict(run_id, reason)
    return publish_error(ctx.settings, change, reason)


def _timed_out(ctx: AppContext, beat: Heartbeat, change: ChangeInput | None) -> str:
    """The watchdog ended the run ``error`` (time limit); now that the pipeline has stopped,
    write the error report over whatever it left and list the run's artifacts."""
    if change is not None:
        verdict = _error_verdict(ctx, beat.run_id, change, beat.reason)
        out = ArtifactDir(ctx.settings.artifacts_dir / beat.run_id)
        store_artifacts(ctx, out, beat, best_effort=True)
        run_store.record_outputs(ctx.db, beat.run_id, beat.worker, verdict, out)
    log.info("run %s stopped at its time limit", beat.run_id)
    return "error"


def register_tasks(app: Celery, settings: Settings,
                   build: Callable[[Settings], AppContext]) -> None:
    limit = settings.task_time_limit_s

    @app.task(name=VERIFY_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
              soft_time_limit=limit, time_limit=limit + 120, ignore_result=True,
              shared=False)
    def verify_run(self: Task, run_id: str) -> str:
        ctx = worker_context(settings, build)
        return execute_run(ctx, run_id, worker_identity(self.request.hostname))

    @app.task(name=PUBLISH_TASK, bind=True, acks_late=True, ignore_result=True, shared=False,
              max_retries=None)
    def publish_run(self: Task, target: str, run_id: str, kind: str) -> str:
        ctx = worker_context(settings, build)

        def retry(delay: float) -> Exception:
            again: Exception = self.retry(countdown=delay)
            return again

        return deliver(ctx, target, run_id, kind, attempt=self.request.retries or 0,
                       retry=retry)
