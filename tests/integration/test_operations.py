"""Operations on a real deployment shape: PostgreSQL, Redis, the API on HTTP and a worker in
its own process (``celery -A workers.main``) with JSON logs.

- ``/ready`` is 503 until a worker heartbeats, then 200; without a token (tokens on) it says
  only which checks passed; ``diffie status`` says the same;
- after a real run (Chromium, URL mode), ``/metrics`` (Prometheus text, read scope) counts it
  by status and verdict, has a histogram of its phases and the broker's queue depth;
- the worker's log lines are JSON objects that name the run;
- a broker that does not answer makes the deployment unready, with what to do.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from diffie import counters, health
from diffie.app_context import AppContext
from diffie.composition import build_context
from tests.conftest import (
    PAGE,
    LiveServer,
    Site,
    finished,
    make_settings,
    settings_env,
    stop_process,
    wait_until,
    worker_process,
)
from tests.paths import REPO_ROOT

SPEC = "flows:\n  - name: home\n    viewports: [desktop]\n    steps:\n" \
       "      - goto: /\n      - screenshot: home\n"


@pytest.fixture
def octx(tmp_path: Path, redis_url: str, pg_url: str) -> Iterator[AppContext]:
    ctx = build_context(make_settings(tmp_path / "data", broker_url=redis_url,
                                      database_url=pg_url, heartbeat_s=1, stale_after_s=6,
                                      api_tokens=["read:r34d", "submit:5ubm1t"]))
    yield ctx
    ctx.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_ready_metrics_and_json_logs_of_a_deployment(
        octx: AppContext, live_api: Callable[[AppContext], LiveServer], tmp_path: Path) -> None:
    server = live_api(octx)
    read = {"Authorization": "Bearer r34d"}
    log = tmp_path / "worker.log"
    worker = None
    with httpx.Client(base_url=server.url, timeout=30) as anon, \
            httpx.Client(base_url=server.url, timeout=30, headers=read) as api:
        assert anon.get("/health").json() == {"status": "ok"}
        first = api.get("/ready")
        assert first.status_code == 503
        checks = {c["name"]: c for c in first.json()["checks"]}
        assert checks["database"]["ok"] and checks["broker"]["ok"]
        assert not checks["workers"]["ok"] and "start one" in checks["workers"]["todo"]
        anonymous = anon.get("/ready").json()
        assert set(anonymous) == {"status", "checks"}            # no hosts, no addresses
        assert all(set(c) == {"name", "ok", "fatal"} for c in anonymous["checks"])
        assert anon.get("/metrics").status_code == 401
        try:
            worker = worker_process(octx.settings, log, log_format="json")
            wait_until(lambda: anon.get("/ready").status_code == 200, timeout=60,
                       what="the worker's first heartbeat")
            ready = api.get("/ready").json()
            assert ready["status"] == "ready" and len(ready["workers"]) == 1
            status = subprocess.run(
                [sys.executable, "-m", "diffie.cli", "status", "--server", server.url,
                 "--token", "r34d"], capture_output=True, text=True, cwd=REPO_ROOT,
                env=settings_env(octx.settings) | {"PATH": "/usr/bin:/bin"}, timeout=60)
            assert status.returncode == 0, status.stderr
            assert "status: ready" in status.stdout and "ok   workers" in status.stdout

            with Site({"/": PAGE % ""}) as site:
                resp = api.post("/v1/runs", headers={"Authorization": "Bearer 5ubm1t"},
                                json={"base_url": site.url, "head_url": site.url,
                                      "spec": SPEC})
                assert resp.status_code == 202, resp.text
                run_id = resp.json()["id"]
                run = finished(api, run_id)
            assert run["status"] == "done" and run["verdict"]["status"] == "pass", run["reason"]
        finally:
            stop_process(worker)
        metrics = api.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    got = samples(metrics.text)
    assert got[("diffie_runs", (("status", "done"), ("verdict", "pass")))] == 1
    assert got[("diffie_queue_depth", (("source", "broker"),))] == 0
    assert got[("diffie_queue_depth", (("source", "database"),))] == 0
    run_count = got[("diffie_phase_seconds_count", (("phase", "run"),))]
    assert run_count == 1
    assert got[("diffie_phase_seconds_sum", (("phase", "run"),))] > 0
    phases = {dict(labels)["phase"] for name, labels in got if name == "diffie_phase_seconds_count"}
    assert {"run", "check URLs", "compare", "report"} <= phases, phases
    buckets = sorted((float(dict(labels)["le"]), value) for (name, labels), value in got.items()
                     if name == "diffie_phase_seconds_bucket" and dict(labels)["phase"] == "run")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets) and buckets[-1][1] == 1

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    mine = [entry for entry in lines if entry["run_id"] == run_id]
    assert mine, log.read_text()[-3000:]
    assert {"ts", "level", "logger", "message", "host", "pid"} <= set(mine[0])
    assert any("phase: report" in entry["message"] for entry in mine)


def test_a_broker_that_does_not_answer_makes_the_deployment_unready(
        tmp_path: Path, pg_url: str) -> None:
    ctx = build_context(make_settings(tmp_path / "data", database_url=pg_url,
                                      broker_url="redis://127.0.0.1:1/0"))
    try:
        result = health.readiness(ctx)
        checks = {c.name: c for c in result.checks}
        assert not result.ready
        assert checks["database"].ok
        assert not checks["broker"].ok and "DIFFIE_BROKER_URL" in checks["broker"].todo
        assert "redis://127.0.0.1:1/0" in checks["broker"].detail
        counters.bump(ctx.db, "publish_retries", "github")
        counters.bump(ctx.db, "publish_retries", "github")
        counters.bump(ctx.db, "publish_retries", "callback")
        assert counters.read(ctx.db, "publish_retries") == {"github": 2, "callback": 1}
    finally:
        ctx.close()
