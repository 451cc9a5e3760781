"""A run's state machine in the database, and the task body (``execute_run``) around the pipeline.

The pipeline is replaced by small stand-ins here; integration tests run the real one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from diffie import run_store
from diffie.app_context import AppContext
from diffie.control import RunControl
from diffie.deps import JobDeps
from diffie.errors import SpecError
from diffie.models import Artifact, FindingRow, Run, utcnow
from diffie.pipeline import fresh_out
from diffie.verdict import Finding, Verdict, judge
from workers import tasks


def new_run(ctx: AppContext) -> str:
    return run_store.submit_url(ctx.db, base_url="http://b", head_url="http://h",
                           spec_text="flows:\n  - name: a\n    steps:\n      - goto: /\n")


def row(ctx: AppContext, run_id: str) -> Run:
    with ctx.db.session() as s:
        run = s.get(Run, run_id)
        assert run is not None
        return run


def age_heartbeat(ctx: AppContext, run_id: str, seconds: float) -> None:
    with ctx.db.session() as s:
        s.execute(update(Run).where(Run.id == run_id)
                  .values(heartbeat_at=utcnow() - timedelta(seconds=seconds)))


def test_claim_is_exclusive_until_the_heartbeat_goes_stale(ctx: AppContext) -> None:
    run_id = new_run(ctx)
    kw: dict[str, Any] = {"stale_after_s": 30, "max_attempts": 3}
    assert run_store.claim(ctx.db, run_id, "w1", **kw) == "claimed"
    r = row(ctx, run_id)
    assert (r.status, r.attempts, r.worker) == ("running", 1, "w1")
    assert r.started_at is not None and r.heartbeat_at is not None
    assert run_store.claim(ctx.db, run_id, "w2", **kw) == "busy"
    assert run_store.heartbeat(ctx.db, run_id, "w1", "browse head 1/2")
    assert not run_store.heartbeat(ctx.db, run_id, "w2")            # not w2's run
    assert row(ctx, run_id).phase == "browse head 1/2"
    age_heartbeat(ctx, run_id, 60)
    assert run_store.claim(ctx.db, run_id, "w2", **kw) == "claimed"  # w1 died: taken over
    assert (row(ctx, run_id).worker, row(ctx, run_id).attempts) == ("w2", 2)
    assert not run_store.heartbeat(ctx.db, run_id, "w1")             # w1 notices it lost the run
    assert run_store.claim(ctx.db, "nope", "w1", **kw) == "missing"


def test_attempts_are_bounded(ctx: AppContext) -> None:
    run_id = new_run(ctx)
    for attempt in range(1, 3):
        assert run_store.claim(ctx.db, run_id, f"w{attempt}", stale_after_s=30,
                          max_attempts=2) == "claimed"
        age_heartbeat(ctx, run_id, 60)
    assert run_store.claim(ctx.db, run_id, "w3", stale_after_s=30, max_attempts=2) == "gave_up"
    r = row(ctx, run_id)
    assert r.status == "error" and "gave up after 2 attempts" in (r.reason or "")
    assert r.verdict is not None and r.verdict["status"] == "error"
    assert run_store.claim(ctx.db, run_id, "w4", stale_after_s=30, max_attempts=2) == "finished"


def test_requeue_stale_puts_dead_workers_runs_back(ctx: AppContext) -> None:
    alive, dead = new_run(ctx), new_run(ctx)
    for run_id in (alive, dead):
        run_store.claim(ctx.db, run_id, "w", stale_after_s=30, max_attempts=3)
    age_heartbeat(ctx, dead, 120)
    assert run_store.requeue_stale(ctx.db, stale_after_s=30) == [dead]
    assert (row(ctx, dead).status, row(ctx, alive).status) == ("queued", "running")
    assert run_store.requeue_stale(ctx.db, stale_after_s=30) == []


def test_record_verdict_stores_findings_and_artifacts_once(ctx: AppContext) -> None:
    run_id = new_run(ctx)
    run_store.claim(ctx.db, run_id, "w", stale_after_s=30, max_attempts=3)
    out = fresh_out(ctx.settings, run_id)
    out.path("index.html").write_text("<html></html>")
    verdict = judge(run_id, [Finding(kind="console_error", flow="a", viewport="desktop",
                                      step=0, message="boom")])
    for _ in range(2):                     # a retried recording replaces, never duplicates
        with ctx.db.session() as s:
            s.execute(update(Run).where(Run.id == run_id).values(status="running"))
        assert run_store.record_verdict(ctx.db, run_id, "w", verdict, out)
    with ctx.db.session() as s:
        assert [f.kind for f in s.scalars(select(FindingRow))] == ["console_error"]
        art = s.scalars(select(Artifact)).one()
        assert (art.name, art.media_type, art.size) == ("index.html",
                                                       "text/html; charset=utf-8", 13)
    r = row(ctx, run_id)
    assert (r.status, r.verdict_status, r.phase) == ("done", "fail", "done")
    assert not run_store.record_verdict(ctx.db, run_id, "w", verdict, out)   # already finished


def test_live_workers(ctx: AppContext) -> None:
    run_store.worker_beat(ctx.db, "w1", hostname="h", pid=1, embedded=True)
    assert run_store.live_workers(ctx.db, within_s=30) == ["w1"]
    run_store.worker_gone(ctx.db, "w1")
    assert run_store.live_workers(ctx.db, within_s=30) == []


# --- execute_run: the task body -----------------------------------------------------------------

def test_execute_run_records_the_verdict(ctx: AppContext,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = new_run(ctx)
    phases: list[str] = []

    def pipeline(change: run_store.ChangeInput, deps: JobDeps, control: RunControl) -> Verdict:
        assert change.run_id == run_id and change.mode == "url"
        control.phase("browse base 1/1")
        phases.append(row(ctx, run_id).phase)
        fresh_out(deps.settings, run_id).path("verdict.json").write_text("{}")
        return judge(run_id, [])

    assert tasks.execute_run(ctx, run_id, "w", pipeline) == "pass"
    r = row(ctx, run_id)
    assert (r.status, r.verdict_status, r.finished_at is not None) == ("done", "pass", True)
    assert phases == ["browse base 1/1"]
    assert tasks.execute_run(ctx, run_id, "w") == "finished"     # a redelivery is skipped


@pytest.mark.parametrize(("exc", "reason", "public"), [
    # an internal error's text stays in the run record; the (public) verdict says where to look
    (ValueError("bad value"), "internal error: ValueError: bad value", "internal error; see the run"),
    (SpecError("a click step needs a selector", file=".diffie.yml", line=4, field="x"),
     ".diffie.yml:4 (x): a click step needs a selector",
     ".diffie.yml:4 (x): a click step needs a selector"),
])
def test_any_exception_ends_the_run_in_error(ctx: AppContext, monkeypatch: pytest.MonkeyPatch,
                                             exc: Exception, reason: str, public: str) -> None:
    run_id = new_run(ctx)

    def pipeline(*a: Any) -> Verdict:
        raise exc

    assert tasks.execute_run(ctx, run_id, "w", pipeline) == "error"
    r = row(ctx, run_id)
    assert (r.status, r.reason) == ("error", reason)
    assert r.verdict is not None and r.verdict["status"] == "error"
    assert public in r.verdict["reason"] and "ValueError" not in r.verdict["reason"]
    assert (ctx.settings.artifacts_dir / run_id / "verdict.json").is_file()


def test_a_cancelled_run_stops_and_stays_cancelled(ctx: AppContext,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = new_run(ctx)

    def pipeline(change: Any, deps: JobDeps, control: RunControl) -> Verdict:
        with ctx.db.session() as s:
            s.execute(update(Run).where(Run.id == run_id).values(status="cancelled"))
        control.phase("browse head 0/1")
        raise AssertionError("not reached")

    assert tasks.execute_run(ctx, run_id, "w", pipeline) == "cancelled"
    assert row(ctx, run_id).status == "cancelled"


def test_worker_shutdown_gives_the_run_back(ctx: AppContext,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = new_run(ctx)

    def pipeline(*a: Any) -> Verdict:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tasks.execute_run(ctx, run_id, "w", pipeline)
    r = row(ctx, run_id)
    assert (r.status, r.phase) == ("queued", "interrupted")


def test_events_are_emitted(ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str]] = []

    class Listener:
        def started(self, run_id: str) -> None:
            seen.append(("started", run_id))

        def finished(self, run_id: str) -> None:
            seen.append(("finished", run_id))
            raise RuntimeError("a broken listener never breaks a run")

    ctx.events.subscribe(Listener())
    run_id = new_run(ctx)
    assert tasks.execute_run(ctx, run_id, "w", lambda *a: judge(run_id, [])) == "pass"
    assert seen == [("started", run_id), ("finished", run_id)]
