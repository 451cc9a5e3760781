"""GET /v1/runs/{id}/wait (long-poll) and POST /v1/runs/{id}/cancel, on SQLite with the
TestClient: no worker takes the run, so it stays queued until cancelled."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from diffie.api import create_app
from diffie.app_context import AppContext
from tests.unit.test_api_runs import URL_BODY


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context=ctx)) as c:
        yield c


class Finished:
    """A listener recording ``finished`` events (what a GitHub publisher hears)."""

    def __init__(self) -> None:
        self.runs: list[str] = []

    def finished(self, run_id: str) -> None:
        self.runs.append(run_id)


def test_wait_answers_after_its_timeout_while_the_run_goes_on(client: TestClient) -> None:
    run_id = client.post("/v1/runs", json=URL_BODY).json()["id"]
    start = time.monotonic()
    resp = client.get(f"/v1/runs/{run_id}/wait", params={"timeout_s": 0.6})
    took = time.monotonic() - start
    assert resp.status_code == 200 and resp.json()["status"] == "queued"
    assert 0.6 <= took < 5
    assert client.get(f"/v1/runs/{run_id}/wait", params={"timeout_s": 61}).status_code == 422
    assert client.get("/v1/runs/0123456789abcdef/wait").status_code == 404


def test_wait_answers_as_soon_as_the_run_is_cancelled(client: TestClient, ctx: AppContext) -> None:
    heard = Finished()
    ctx.events.subscribe(heard)
    run_id = client.post("/v1/runs", json=URL_BODY).json()["id"]
    timer = threading.Timer(0.5, lambda: client.post(f"/v1/runs/{run_id}/cancel",
                                                     json={"reason": "not needed"}))
    timer.start()
    start = time.monotonic()
    try:
        resp = client.get(f"/v1/runs/{run_id}/wait", params={"timeout_s": 30})
    finally:
        timer.join()
    assert time.monotonic() - start < 10
    run = resp.json()
    assert (run["status"], run["reason"]) == ("cancelled", "not needed")
    assert heard.runs == [run_id]
    again = client.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 409 and "already finished (cancelled)" in again.text
    assert client.post("/v1/runs/0123456789abcdef/cancel").status_code == 404


def test_cancel_needs_the_submit_scope(ctx: AppContext) -> None:
    ctx.settings.api_tokens = ["read:r3ader", "subm1tter"]
    with TestClient(create_app(context=ctx)) as client:
        run_id = client.post("/v1/runs", json=URL_BODY,
                             headers={"Authorization": "Bearer subm1tter"}).json()["id"]
        reader = {"Authorization": "Bearer r3ader"}
        assert client.post(f"/v1/runs/{run_id}/cancel", headers=reader).status_code == 403
        assert client.get(f"/v1/runs/{run_id}/wait", params={"timeout_s": 0},
                          headers=reader).json()["status"] == "queued"
        done = client.post(f"/v1/runs/{run_id}/cancel",
                           headers={"Authorization": "Bearer subm1tter"})
        assert done.status_code == 200 and done.json()["reason"] == "cancelled through the API"
