"""A run's life in the database: submit, claim, heartbeat, record, recover.

Every transition is one conditional UPDATE, so it is atomic on SQLite and PostgreSQL alike and
safe when two workers hold the same message (a redelivery): only the worker that claimed a run
can move it on, and a run whose worker stopped heartbeating can be claimed again.

    (waiting ──a maintainer authorises──>) queued ──claim──> running ──record_verdict──> done
      │                 │  └────record_error────> error
      │                 └─(worker died: heartbeat stale)─> queued again (≤ max_attempts)
      └─(never taken: message lost, claim failed; queued too long)─> queued again (≤ max_attempts)
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from diffie.approvals import approvals_for, subject_of
from diffie.artifacts import ArtifactDir
from diffie.db import Database
from diffie.models import (
    FINISHED,
    Artifact,
    Change,
    FindingRow,
    Run,
    RunPhase,
    WorkerBeat,
    utcnow,
)
from diffie.uploads import Upload
from diffie.verdict import Verdict

PHASE_LEN = 32
log = logging.getLogger(__name__)

_MEDIA_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
    ".gif": "image/gif", ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8",
    ".json": "application/json", ".xml": "application/xml", ".zip": "application/zip",
    ".txt": "text/plain; charset=utf-8", ".log": "text/plain; charset=utf-8",
    ".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".webm": "video/webm",
}


def media_type_for(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in _MEDIA_TYPES:
        return _MEDIA_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes (stored in UTC); PostgreSQL aware ones."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ChangeInput:
    """What the pipeline verifies: a snapshot of the Change row (no session needed)."""

    run_id: str
    mode: str                      # url | repo | github
    base_url: str | None = None
    head_url: str | None = None
    repo: str | None = None
    base_rev: str | None = None
    head_rev: str | None = None
    upload: Upload | None = None       # repo mode: the head is base + this
    spec_text: str | None = None
    spec_path: str = ".diffie.yml"
    head_repo_url: str | None = None
    title: str | None = None
    repository: str | None = None      # GitHub "owner/repo" (images may be limited to some)
    untrusted_head: bool = False       # sandbox, deploy and origins come from the base's spec
    # visual changes approved before for this change's subject: fingerprint → approval text
    approvals: dict[str, str] = field(default_factory=dict)


# --- submission ---------------------------------------------------------------------------------

def create_run(session: Session, change: Change, *, callback_url: str | None = None) -> Run:
    """Record a change and its first (queued) run in the caller's transaction."""
    session.add(change)
    session.flush()
    run = Run(change_id=change.id, status="queued", phase="queued", callback_url=callback_url)
    session.add(run)
    session.flush()
    return run


def submit_url(db: Database, *, base_url: str, head_url: str, spec_text: str,
               title: str | None = None, callback_url: str | None = None) -> str:
    with db.session() as s:
        return create_run(s, Change(mode="url", base_url=base_url, head_url=head_url,
                                    spec_text=spec_text, title=title),
                          callback_url=callback_url).id


def submit_repo(db: Database, *, repo: str, base: str, head: str, spec_path: str = ".diffie.yml",
                spec_text: str | None = None, title: str | None = None,
                upload: Upload | None = None, callback_url: str | None = None) -> str:
    """A repo-mode run; with ``upload``, ``head`` is its label and the head is base + it."""
    with db.session() as s:
        return create_run(s, Change(mode="repo", repo=repo, base_rev=base, head_rev=head,
                                    spec_path=spec_path, spec_text=spec_text, title=title,
                                    patch=upload.data if upload else None,
                                    patch_format=upload.format if upload else None),
                          callback_url=callback_url).id


def change_input(db: Database, run_id: str) -> ChangeInput:
    with db.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise LookupError(f"no run {run_id}")
        c = run.change
        return ChangeInput(run_id=run.id, mode=c.mode, base_url=c.base_url, head_url=c.head_url,
                           repo=c.repo, base_rev=c.base_rev, head_rev=c.head_rev,
                           upload=(Upload(c.patch_format, c.patch)  # type: ignore[arg-type]
                                   if c.patch is not None and c.patch_format else None),
                           spec_text=c.spec_text, spec_path=c.spec_path,
                           head_repo_url=c.head_repo_url, title=c.title,
                           repository=(f"{c.gh_owner}/{c.gh_repo}"
                                       if c.gh_owner and c.gh_repo else None),
                           untrusted_head=bool(c.untrusted_head),
                           approvals=approvals_for(s, subject_of(c)))


ACTIVE = ("waiting", "queued", "running")


@dataclass(frozen=True)
class RunRow:
    """One line of a run list."""

    id: str
    status: str
    verdict_status: str | None
    title: str | None
    created_at: str


def recent_runs(db: Database, *, limit: int = 20) -> list[RunRow]:
    """The newest runs first."""
    with db.session() as s:
        runs = s.scalars(select(Run).order_by(Run.created_at.desc()).limit(limit))
        return [RunRow(id=r.id, status=r.status, verdict_status=r.verdict_status,
                       title=r.change.title, created_at=(as_utc(r.created_at)
                                                         or r.created_at).isoformat())
                for r in runs]


def cancel_runs(s: Session, run_ids: list[str], reason: str) -> list[str]:
    """Cancel those of ``run_ids`` still waiting, queued or running (a running one's worker
    notices at its next heartbeat and stops). Returns the ids it cancelled."""
    cancelled = []
    for run_id in run_ids:
        result = s.execute(update(Run).where(Run.id == run_id, Run.status.in_(ACTIVE)).values(
            status="cancelled", phase="cancelled", reason=reason, finished_at=utcnow())
            .execution_options(synchronize_session=False))
        if result.rowcount == 1:  # type: ignore[attr-defined]
            cancelled.append(run_id)
    return cancelled


def abandon(db: Database, run_id: str, reason: str) -> None:
    """A queued run that will never be picked up (it could not be enqueued): ``error``."""
    from diffie.verdict import error_verdict

    with db.session() as s:
        s.execute(update(Run).where(Run.id == run_id, Run.status == "queued").values(
            status="error", phase="error", reason=reason, verdict_status="error",
            verdict=error_verdict(run_id, reason).model_dump(mode="json"), finished_at=utcnow())
            .execution_options(synchronize_session=False))


# --- the worker's side --------------------------------------------------------------------------

ClaimOutcome = Literal["claimed", "finished", "busy", "missing", "gave_up"]


def claim(db: Database, run_id: str, worker: str, *, stale_after_s: float,
          max_attempts: int) -> ClaimOutcome:
    """Take a run for ``worker``: a queued one, or a running one whose worker went silent."""
    now = utcnow()
    cutoff = now - timedelta(seconds=stale_after_s)
    with db.session() as s:
        result = s.execute(
            update(Run)
            .where(Run.id == run_id)
            .where((Run.status == "queued")
                   | ((Run.status == "running")
                      & ((Run.heartbeat_at.is_(None)) | (Run.heartbeat_at < cutoff))))
            .values(status="running", attempts=Run.attempts + 1, worker=worker[:200],
                    started_at=now, heartbeat_at=now, phase="starting", reason=None)
            .execution_options(synchronize_session=False))
        claimed = result.rowcount == 1  # type: ignore[attr-defined]
        run = s.get(Run, run_id)
        if run is None:
            return "missing"
        if not claimed:
            return "finished" if run.status in FINISHED else "busy"
        attempts = run.attempts
    if attempts > max_attempts:
        reason = (f"gave up after {attempts - 1} attempts: the worker running it stopped "
                  f"(killed, crashed or timed out) or its queue message was lost each time")
        from diffie.verdict import error_verdict

        record_error(db, run_id, worker, reason, error_verdict(run_id, reason))
        return "gave_up"
    return "claimed"


def _mine(run_id: str, worker: str):  # type: ignore[no-untyped-def]
    return update(Run).where(Run.id == run_id, Run.status == "running", Run.worker == worker[:200])


def heartbeat(db: Database, run_id: str, worker: str, phase: str | None = None) -> bool:
    """Refresh the run's heartbeat (and phase). False: the run is no longer ours."""
    values: dict[str, object] = {"heartbeat_at": utcnow()}
    if phase is not None:
        values["phase"] = phase[:PHASE_LEN]
    with db.session() as s:
        result = s.execute(_mine(run_id, worker).values(**values)
                           .execution_options(synchronize_session=False))
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _replace_rows(s: Session, run_id: str, verdict: Verdict, out: ArtifactDir | None) -> None:
    s.execute(delete(FindingRow).where(FindingRow.run_id == run_id))
    s.execute(delete(Artifact).where(Artifact.run_id == run_id))
    for f in verdict.findings:
        s.add(FindingRow(run_id=run_id, finding_id=f.id, kind=f.kind, flow=f.flow,
                      viewport=f.viewport, step=f.step, message=f.message,
                      data=f.model_dump(mode="json")))
    if out is not None:
        for name in out.names():
            s.add(Artifact(run_id=run_id, name=name, media_type=media_type_for(name),
                           size=out.path(name).stat().st_size))


def record_verdict(db: Database, run_id: str, worker: str, verdict: Verdict,
                   out: ArtifactDir | None) -> bool:
    """The run is ``done``: store the verdict, its findings and the artifact list."""
    status = "error" if verdict.status == "error" else "done"
    with db.session() as s:
        result = s.execute(_mine(run_id, worker).values(
            status=status, phase=status, verdict=verdict.model_dump(mode="json"),
            verdict_status=verdict.status, reason=verdict.reason, finished_at=utcnow(),
            heartbeat_at=utcnow()).execution_options(synchronize_session=False))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        _replace_rows(s, run_id, verdict, out)
        return True


def record_error(db: Database, run_id: str, worker: str, reason: str, verdict: Verdict,
                 out: ArtifactDir | None = None) -> bool:
    """The run could not be verified: status ``error`` with a readable reason."""
    with db.session() as s:
        result = s.execute(_mine(run_id, worker).values(
            status="error", phase="error", reason=reason, verdict=verdict.model_dump(mode="json"),
            verdict_status="error", finished_at=utcnow()).execution_options(
                synchronize_session=False))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        _replace_rows(s, run_id, verdict, out)
        return True


def record_outputs(db: Database, run_id: str, worker: str, verdict: Verdict,
                   out: ArtifactDir | None) -> bool:
    """Replace the verdict, findings and artifact list of a run ``worker`` already ended
    ``error`` (its watchdog did, at the time limit, before the pipeline stopped)."""
    with db.session() as s:
        result = s.execute(update(Run).where(Run.id == run_id, Run.status == "error",
                                             Run.worker == worker[:200])
                           .values(verdict=verdict.model_dump(mode="json"))
                           .execution_options(synchronize_session=False))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        _replace_rows(s, run_id, verdict, out)
        return True


def release(db: Database, run_id: str, worker: str, phase: str = "interrupted") -> bool:
    """Give an unfinished run back to the queue (the worker is shutting down)."""
    with db.session() as s:
        result = s.execute(_mine(run_id, worker).values(
            status="queued", phase=phase[:PHASE_LEN], heartbeat_at=utcnow())
            .execution_options(synchronize_session=False))
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def requeue_stale(db: Database, *, stale_after_s: float) -> list[str]:
    """Runs left ``running`` by a dead worker (stale heartbeat) go back to ``queued``.

    Returns their ids: the caller enqueues them again. ``claim`` ends a run as ``error`` once
    it has used up its attempts.
    """
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    stale_where = ((Run.status == "running")
                   & (Run.heartbeat_at.is_(None) | (Run.heartbeat_at < cutoff)))
    with db.session() as s:
        ids = list(s.scalars(select(Run.id).where(stale_where)))
        requeued = []
        for run_id in ids:
            result = s.execute(update(Run).where(Run.id == run_id).where(stale_where)
                               .values(status="queued", phase="requeued: worker lost",
                                       heartbeat_at=utcnow())
                               .execution_options(synchronize_session=False))
            if result.rowcount == 1:  # type: ignore[attr-defined]
                requeued.append(run_id)
        return requeued


def requeue_lost(db: Database, *, queued_after_s: float,
                 max_attempts: int) -> tuple[list[str], list[str]]:
    """Runs ``queued`` for longer than ``queued_after_s`` since they were (last) put on the
    queue: their broker message was lost, or the worker that took it could not claim the run
    (a database error). Each goes back on the queue — counted as an attempt — or, once it has
    used up ``max_attempts``, ends ``error``. Returns (ids to enqueue again, ids given up).

    A queued run's ``heartbeat_at`` is when it was last (re)queued (``created_at`` before it
    ever was); a duplicate message is harmless: only one claim of a run succeeds.
    """
    from diffie.verdict import error_verdict

    now = utcnow()
    cutoff = now - timedelta(seconds=queued_after_s)
    lost_where = ((Run.status == "queued")
                  & ((Run.heartbeat_at.is_(None) & (Run.created_at < cutoff))
                     | (Run.heartbeat_at < cutoff)))
    requeued: list[str] = []
    gave_up: list[str] = []
    with db.session() as s:
        rows = list(s.execute(select(Run.id, Run.attempts).where(lost_where)))
        for run_id, attempts in rows:
            give_up = attempts >= max_attempts
            if give_up:
                reason = (f"no worker took this run: it was put on the queue {attempts + 1} "
                          f"times, {queued_after_s:g} s apart (DIFFIE_QUEUED_STALE_AFTER_S), and "
                          f"stayed queued each time; check that a worker consumes the queue")
                values: dict[str, object] = dict(
                    status="error", phase="error", reason=reason, verdict_status="error",
                    verdict=error_verdict(run_id, reason).model_dump(mode="json"),
                    finished_at=now)
            else:
                values = dict(attempts=Run.attempts + 1, heartbeat_at=now,
                              phase="requeued: never taken")
            result = s.execute(update(Run).where(Run.id == run_id).where(lost_where)
                               .values(**values).execution_options(synchronize_session=False))
            if result.rowcount == 1:  # type: ignore[attr-defined]
                (gave_up if give_up else requeued).append(run_id)
        return requeued, gave_up


# --- worker liveness ----------------------------------------------------------------------------

def record_phases(db: Database, run_id: str, timings: list[tuple[str, float]]) -> None:
    """How long each phase of a run took (``/metrics``); never raises."""
    try:
        with db.session() as s:
            s.add_all(RunPhase(run_id=run_id, phase=name[:PHASE_LEN], seconds=round(sec, 3))
                      for name, sec in timings)
    except Exception:
        log.exception("run %s: phase timings not recorded", run_id)


def worker_beat(db: Database, name: str, *, hostname: str, pid: int, embedded: bool) -> None:
    with db.session() as s:
        row = s.get(WorkerBeat, name)
        if row is None:
            s.add(WorkerBeat(name=name, hostname=hostname, pid=pid, embedded=embedded))
        else:
            row.last_seen = utcnow()


def worker_gone(db: Database, name: str) -> None:
    with db.session() as s:
        s.execute(delete(WorkerBeat).where(WorkerBeat.name == name))


def live_worker_rows(db: Database, *, within_s: float) -> list[WorkerBeat]:
    """Workers that heartbeated within ``within_s``, by host and name."""
    cutoff = utcnow() - timedelta(seconds=within_s)
    with db.session() as s:
        return list(s.scalars(select(WorkerBeat).where(WorkerBeat.last_seen >= cutoff)
                              .order_by(WorkerBeat.hostname, WorkerBeat.name)))


def live_workers(db: Database, *, within_s: float) -> list[str]:
    return [row.name for row in live_worker_rows(db, within_s=within_s)]
