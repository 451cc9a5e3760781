"""Nothing stays ``queued`` forever, with a real broker (the embedded SQLite one and Redis) and
a real worker: a run whose broker message was lost, or whose claim hit a database error, is
put on the queue again by the worker's recovery round and then runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from diffie import run_store
from diffie.app_context import AppContext
from diffie.composition import build_context
from tests.conftest import PAGE, LiveServer, Site, finished, make_settings
from workers.embedded import EmbeddedWorker

pytestmark = pytest.mark.integration

SPEC = "flows:\n  - name: home\n    viewports: [desktop]\n    steps:\n      - goto: /\n"
# The recovery round runs every heartbeat; a queued run is "lost" after a second here.
FAST: dict[str, Any] = dict(heartbeat_s=0.3, queued_stale_after_s=1.0, noise_floor=False,
                            parallel_sides=False)


@pytest.fixture(params=["embedded", "redis"])
def qctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppContext]:
    overrides = dict(FAST)
    if request.param == "redis":
        overrides.update(broker_url=request.getfixturevalue("redis_url"),
                         database_url=request.getfixturevalue("pg_url"))
    ctx = build_context(make_settings(tmp_path / "data", **overrides))
    yield ctx
    ctx.close()


@pytest.fixture
def api(qctx: AppContext, live_api: Callable[[AppContext], LiveServer]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_api(qctx).url, timeout=30) as client:
        yield client


def test_a_run_whose_broker_message_was_lost_is_requeued_and_runs(
        qctx: AppContext, api: httpx.Client) -> None:
    with Site({"/": PAGE % ""}) as site:
        # recorded, but its message never reached the broker (the API died in between, the
        # broker dropped it): only the recovery can get it going
        run_id = run_store.submit_url(qctx.db, base_url=site.url, head_url=site.url, spec_text=SPEC)
        with EmbeddedWorker(qctx.celery):
            run = finished(api, run_id, timeout=120)
    assert run["status"] == "done", run["reason"]
    assert run["verdict"]["status"] == "pass"
    assert run["attempts"] == 2              # the re-enqueue counts as an attempt
    assert "/" in site.hits


def test_a_run_whose_claim_hit_a_database_error_is_requeued_and_runs(
        qctx: AppContext, api: httpx.Client) -> None:
    failures: list[str] = []

    # the database itself fails the first claim (an engine event, as a lock timeout would):
    # the claim's UPDATE of a queued run to running
    def fail_first_claim(conn: Any, cursor: Any, statement: str, parameters: Any,
                         context: Any, executemany: bool) -> None:
        text = " ".join(statement.split()).lower()
        if not failures and text.startswith("update runs set status=") and "attempts" in text:
            failures.append(text)
            raise OperationalError(statement, parameters, Exception("database is locked"))

    event.listen(qctx.db.engine, "before_cursor_execute", fail_first_claim)
    try:
        run_id, run = _submit_unreachable_and_wait(qctx, api)
    finally:
        event.remove(qctx.db.engine, "before_cursor_execute", fail_first_claim)
    assert len(failures) == 1
    # it ran (its base is unreachable on purpose: a quick, browser-free verdict)
    assert run["status"] == "error" and "is unreachable" in run["reason"]
    assert run["attempts"] == 2


def _submit_unreachable_and_wait(qctx: AppContext,
                                 api: httpx.Client) -> tuple[str, dict[str, Any]]:
    with EmbeddedWorker(qctx.celery):
        resp = api.post("/v1/runs", json={"base_url": "http://127.0.0.1:9",
                                          "head_url": "http://127.0.0.1:9", "spec": SPEC})
        assert resp.status_code == 202, resp.text
        run_id = resp.json()["id"]
        run = finished(api, run_id, timeout=90)
    return run_id, run
