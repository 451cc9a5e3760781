"""Runs that would otherwise never finish: queued runs no worker took, runs past the time limit.

The pipeline is replaced by stand-ins here; tests/integration/test_queue_recovery.py and
tests/security/test_limits.py run the real queue and the real pipeline.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from diffie import run_store
from diffie.app_context import AppContext
from diffie.composition import build_context
from diffie.control import RunControl
from diffie.deps import JobDeps
from diffie.models import Artifact, Run, utcnow
from diffie.pipeline import fresh_out
from diffie.verdict import Verdict, judge
from tests.conftest import make_settings
from workers import tasks
from workers.supervisor import recover_stale


def new_run(ctx: AppContext) -> str:
    return run_store.submit_url(ctx.db, base_url="http://b", head_url="http://h",
                           spec_text="flows:\n  - name: a\n    steps:\n      - goto: /\n")


def row(ctx: AppContext, run_id: str) -> Run:
    with ctx.db.session() as s:
        run = s.get(Run, run_id)
        assert run is not None
        return run


def age(ctx: AppContext, run_id: str, seconds: float, *, created: bool = False) -> None:
    past = utcnow() - timedelta(seconds=seconds)
    values: dict[str, Any] = {"created_at": past} if created else {"heartbeat_at": past}
    with ctx.db.session() as s:
        s.execute(update(Run).where(Run.id == run_id).values(**values))


# --- queued runs no worker took ---------------------------------------------------------------

def test_a_queued_run_older_than_the_setting_is_requeued_within_max_attempts(
        ctx: AppContext) -> None:
    young, lost = new_run(ctx), new_run(ctx)
    age(ctx, lost, 120, created=True)
    kw: dict[str, Any] = {"queued_after_s": 60, "max_attempts": 2}
    assert run_store.requeue_lost(ctx.db, **kw) == ([lost], [])
    r = row(ctx, lost)
    assert (r.status, r.attempts, r.phase) == ("queued", 1, "requeued: never taken")
    assert row(ctx, young).attempts == 0
    assert run_store.requeue_lost(ctx.db, **kw) == ([], [])        # just requeued: not yet stale
    age(ctx, lost, 120)
    assert run_store.requeue_lost(ctx.db, **kw) == ([lost], [])
    age(ctx, lost, 120)
    assert run_store.requeue_lost(ctx.db, **kw) == ([], [lost])    # used up its attempts
    r = row(ctx, lost)
    assert r.status == "error" and r.verdict is not None and r.verdict["status"] == "error"
    assert "DIFFIE_QUEUED_STALE_AFTER_S" in (r.reason or "") and "3 times" in (r.reason or "")
    assert r.finished_at is not None


def test_a_requeued_run_is_then_claimed_normally(ctx: AppContext) -> None:
    run_id = new_run(ctx)
    age(ctx, run_id, 120, created=True)
    run_store.requeue_lost(ctx.db, queued_after_s=60, max_attempts=3)
    assert run_store.claim(ctx.db, run_id, "w", stale_after_s=30, max_attempts=3) == "claimed"
    assert row(ctx, run_id).attempts == 2
    assert run_store.requeue_lost(ctx.db, queued_after_s=60, max_attempts=3) == ([], [])  # running


def test_runs_given_back_to_the_queue_are_not_at_once_taken_for_lost(ctx: AppContext) -> None:
    released, stale = new_run(ctx), new_run(ctx)
    for run_id in (released, stale):
        age(ctx, run_id, 3600, created=True)
        run_store.claim(ctx.db, run_id, "w", stale_after_s=30, max_attempts=3)
    run_store.release(ctx.db, released, "w")
    age(ctx, stale, 120)
    assert run_store.requeue_stale(ctx.db, stale_after_s=30) == [stale]
    assert run_store.requeue_lost(ctx.db, queued_after_s=60, max_attempts=3) == ([], [])


class FakeApp:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_task(self, name: str, *, args: list[str], queue: str) -> None:
        self.sent.extend(args)


def test_the_supervisor_round_enqueues_lost_runs_and_publishes_given_up_ones(
        tmp_path: Any) -> None:
    ctx = build_context(make_settings(tmp_path / "data", queued_stale_after_s=60, max_attempts=1))
    try:
        finished: list[str] = []

        class Listener:
            def finished(self, run_id: str) -> None:
                finished.append(run_id)

        ctx.events.subscribe(Listener())
        lost, doomed = new_run(ctx), new_run(ctx)
        age(ctx, lost, 120, created=True)
        age(ctx, doomed, 120, created=True)
        with ctx.db.session() as s:
            s.execute(update(Run).where(Run.id == doomed).values(attempts=1))
        app = FakeApp()
        assert recover_stale(app, ctx) == [lost]
        assert app.sent == [lost] and finished == [doomed]
        assert row(ctx, doomed).status == "error"
    finally:
        ctx.close()


# --- the time limit ---------------------------------------------------------------------------

def test_a_run_past_the_time_limit_ends_error_at_the_limit(tmp_path: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = build_context(make_settings(tmp_path / "data", task_time_limit_s=1, heartbeat_s=5))
    try:
        run_id = new_run(ctx)
        seen: dict[str, Any] = {}
        release = threading.Event()

        def pipeline(change: run_store.ChangeInput, deps: JobDeps, control: RunControl) -> Verdict:
            fresh_out(deps.settings, run_id).path("partial.png").write_bytes(b"x")
            t0 = time.monotonic()
            while not release.wait(0.05):            # a step that takes long
                r = row(ctx, run_id)
                if r.status == "error" and "at" not in seen:
                    seen["at"] = time.monotonic() - t0
                    seen["reason"] = r.reason
                    release.set()
            control.phase("compare")                  # the next phase stops it
            raise AssertionError("not reached")

        t0 = time.monotonic()
        assert tasks.execute_run(ctx, run_id, "w", pipeline) == "error"
        assert time.monotonic() - t0 < 10
        assert 0.8 < seen["at"] < 3
        r = row(ctx, run_id)
        assert r.status == "error" and r.reason == seen["reason"]
        assert "time limit of 1 s (DIFFIE_TASK_TIME_LIMIT_S)" in (r.reason or "")
        assert r.verdict is not None and r.verdict["reason"] == r.reason
        with ctx.db.session() as s:
            names = set(s.scalars(select(Artifact.name).where(Artifact.run_id == run_id)))
        assert names >= {"verdict.json", "index.html"}
        verdict_json = (ctx.settings.artifacts_dir / run_id / "verdict.json").read_text()
        assert "DIFFIE_TASK_TIME_LIMIT_S" in verdict_json
    finally:
        ctx.close()


def test_a_run_that_finishes_after_its_limit_is_not_done(tmp_path: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipeline that never reports progress again still cannot record ``done``."""
    ctx = build_context(make_settings(tmp_path / "data", task_time_limit_s=1, heartbeat_s=5))
    try:
        run_id = new_run(ctx)

        def pipeline(*a: Any) -> Verdict:
            time.sleep(1.6)
            return judge(run_id, [])

        assert tasks.execute_run(ctx, run_id, "w", pipeline) == "error"
        r = row(ctx, run_id)
        assert r.status == "error" and "DIFFIE_TASK_TIME_LIMIT_S" in (r.reason or "")
    finally:
        ctx.close()


def test_a_run_within_its_limit_is_untouched(ctx: AppContext,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = new_run(ctx)
    assert tasks.execute_run(ctx, run_id, "w", lambda *a: judge(run_id, [])) == "pass"
    assert row(ctx, run_id).status == "done"
