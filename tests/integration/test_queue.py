"""The queue for real: the API on HTTP → a Celery broker (Redis, or the embedded SQLite one) →
a real worker → the real pipeline (Chromium where the test needs a browser).

- Redis runs use PostgreSQL (the many-machines configuration); embedded-broker runs use
  SQLite (the one-machine defaults).
- A worker killed with SIGKILL in the middle of a run: the run is picked up again.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from diffie.app_context import AppContext
from diffie.composition import build_context
from tests.conftest import (
    PAGE,
    LiveServer,
    Site,
    finished,
    make_settings,
    stop_process,
    wait_until,
    worker_process,
)
from workers.embedded import EmbeddedWorker

# The worker subprocess: notice a killed worker within seconds; one browser at a time.
FAST_LIVENESS: dict[str, Any] = dict(heartbeat_s=1, stale_after_s=4, noise_floor=False,
                                     parallel_sides=False)
FLOW = "flows:\n  - name: home\n    viewports: [desktop]\n    steps:\n{steps}"


def spec(*steps: str, timeout_ms: int = 10_000) -> str:
    return f"timeout_ms: {timeout_ms}\n" + FLOW.format(steps="".join(
        f"      - {s}\n" for s in steps))


@pytest.fixture(params=["embedded", "redis"])
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def qctx(broker: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[AppContext]:
    overrides: dict[str, Any] = {}
    if broker == "redis":
        overrides = {"broker_url": request.getfixturevalue("redis_url"),
                     "database_url": request.getfixturevalue("pg_url")}
    ctx = build_context(make_settings(tmp_path / "data", **overrides))
    yield ctx
    ctx.close()


@pytest.fixture
def api(qctx: AppContext, live_api: Callable[[AppContext], LiveServer]) -> Iterator[httpx.Client]:
    server = live_api(qctx)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def worker(qctx: AppContext) -> Iterator[EmbeddedWorker]:
    with EmbeddedWorker(qctx.celery) as w:
        yield w


def submit(api: httpx.Client, base_url: str, head_url: str, spec_text: str) -> str:
    resp = api.post("/v1/runs", json={"base_url": base_url, "head_url": head_url,
                                      "spec": spec_text})
    assert resp.status_code == 202, resp.text
    run_id: str = resp.json()["id"]
    return run_id


def test_unreachable_base_ends_in_error_with_a_reason(api: httpx.Client,
                                                      worker: EmbeddedWorker) -> None:
    ids = [submit(api, "http://127.0.0.1:9", f"http://127.0.0.1:{9 + i}", spec("goto: /"))
           for i in range(3)]
    for run_id in ids:
        run = finished(api, run_id, timeout=90)
        assert run["status"] == "error" and run["attempts"] == 1
        assert "base URL http://127.0.0.1:9 is unreachable" in run["reason"]
        assert run["verdict"]["status"] == "error"
        assert run["verdict"]["reason"] == run["reason"]
        names = {a["name"] for a in run["artifacts"]}
        assert {"verdict.json", "index.html"} <= names


# One real-browser run per broker is enough here (the end-to-end test drives many more).
@pytest.mark.parametrize("broker", ["embedded"], indirect=True)
def test_missing_selector_fails_with_the_step(api: httpx.Client, worker: EmbeddedWorker) -> None:
    button = '<button id="buy">Buy</button>'
    with Site({"/": PAGE % button}) as base, Site({"/": PAGE % ""}) as head:
        run_id = submit(api, base.url, head.url, spec(
            "goto: /", "expect_visible: '#title'",
            "click: {selector: '#buy', timeout_ms: 1500}", "screenshot: home"))
        run = finished(api, run_id)
    assert run["status"] == "done", run["reason"]
    verdict = run["verdict"]
    assert verdict["status"] == "fail"
    failed = [f for f in verdict["findings"] if f["kind"] == "step_failed"]
    assert len(failed) == 1
    assert (failed[0]["flow"], failed[0]["viewport"], failed[0]["step"]) == ("home", "desktop", 2)
    assert "#buy" in failed[0]["message"] + str(failed[0].get("step_description"))
    report = api.get(f"/v1/runs/{run_id}/report")
    assert report.status_code == 200 and "text/html" in report.headers["content-type"]


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_unreachable_head_fails_with_the_step(api: httpx.Client, worker: EmbeddedWorker) -> None:
    with Site({"/": PAGE % ""}) as base:
        run_id = submit(api, base.url, "http://127.0.0.1:9", spec("goto: /", "screenshot: a"))
        run = finished(api, run_id)
    assert run["status"] == "done", run["reason"]
    assert run["verdict"]["status"] == "fail"
    kinds = {(f["kind"], f["step"]) for f in run["verdict"]["findings"]}
    assert ("step_failed", 0) in kinds


def test_killed_worker_run_is_retried(api: httpx.Client, qctx: AppContext,
                                      tmp_path: Path) -> None:
    log = tmp_path / "workers.log"
    with Site({"/": PAGE % "", "/slow": PAGE % ""}) as site:
        site.delay_s = 120                          # hold the first worker inside the flow
        first = worker_process(qctx.settings, log, **FAST_LIVENESS)
        second = None
        try:
            run_id = submit(api, site.url, site.url, spec("goto: /slow", "screenshot: a",
                                                          timeout_ms=120_000))
            wait_until(lambda: api.get(f"/v1/runs/{run_id}").json()["phase"].startswith(
                "browse") and "/slow" in site.hits, timeout=120, what="the first worker to browse")
            os.killpg(first.pid, signal.SIGKILL)   # the worker and its browser, mid-run
            first.wait(10)
            assert api.get(f"/v1/runs/{run_id}").json()["status"] == "running"
            site.delay_s = 0
            second = worker_process(qctx.settings, log, **FAST_LIVENESS)
            run = finished(api, run_id, timeout=180)
        finally:
            stop_process(first)
            stop_process(second)
    assert run["status"] == "done", (run["reason"], log.read_text()[-3000:])
    assert run["attempts"] == 2
    assert run["verdict"]["status"] == "pass"
