"""The API on real HTTP (uvicorn on a free port), against SQLite and against PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from diffie.app_context import AppContext
from diffie.composition import build_context
from diffie.models import Change, Delivery, Run
from tests.conftest import GITHUB_FIXTURES, LiveServer, make_settings

SECRET = "It's a Secret to Everybody"
TOKEN = "s3cret-token"
SPEC = "flows:\n  - name: home\n    steps:\n      - goto: /\n      - screenshot: home\n"
BODY = {"base_url": "http://127.0.0.1:9/", "head_url": "http://127.0.0.1:9/", "spec": SPEC}


def base(client: httpx.Client) -> str:
    return str(client.base_url).rstrip("/")


@pytest.fixture
def api(tmp_path: Path, database_url: str,
        live_api: Callable[[AppContext], LiveServer]) -> Iterator[tuple[AppContext, httpx.Client]]:
    settings = make_settings(tmp_path / "data", database_url=database_url,
                             github_webhook_secret=SECRET, api_tokens=[TOKEN],
                             max_body_bytes=64_000)
    ctx = build_context(settings)
    enqueued: list[str] = []
    ctx.enqueue_fn = enqueued.append
    ctx.enqueued = enqueued  # type: ignore[attr-defined]
    server = live_api(ctx)
    with httpx.Client(base_url=server.url, timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield ctx, client
    ctx.close()


def test_submit_and_read_back(api: tuple[AppContext, httpx.Client]) -> None:
    ctx, client = api
    resp = client.post("/v1/runs", json=BODY)
    assert resp.status_code == 202
    run_id = resp.json()["id"]
    assert resp.json()["links"]["self"] == f"{base(client)}/v1/runs/{run_id}"
    got = client.get(f"/v1/runs/{run_id}")
    assert got.status_code == 200 and got.json()["status"] == "queued"
    assert ctx.enqueued == [run_id]  # type: ignore[attr-defined]
    assert client.get("/v1/runs", params={"status": "queued"}).json()[0]["id"] == run_id
    assert client.get("/docs").status_code == 200


def test_auth_over_http(api: tuple[AppContext, httpx.Client]) -> None:
    _, client = api
    bare = httpx.post(f"{base(client)}/v1/runs", json=BODY)
    assert bare.status_code == 401
    wrong = httpx.get(f"{base(client)}/v1/runs", headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401


def test_bad_bodies(api: tuple[AppContext, httpx.Client]) -> None:
    ctx, client = api
    malformed = client.post("/v1/runs", content=b"{not json",
                            headers={"Content-Type": "application/json"})
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["type"] == "json_invalid"
    spec = client.post("/v1/runs", json={**BODY, "spec": SPEC.replace("goto: /", "goto:")})
    assert spec.status_code == 422
    assert spec.json()["detail"][0]["ctx"] == {
        "file": ".diffie.yml", "line": 4, "field": "flows[0].steps[0]",
        "reason": "a goto step needs a url"}
    # Declared too large: refused before the body is read.
    declared = client.post("/v1/runs", content=b"{}" + b" " * 100_000,
                           headers={"Content-Type": "application/json"})
    assert declared.status_code == 413

    # Streamed without a Content-Length (chunked): refused once the bytes exceed the limit.
    def chunks() -> Iterator[bytes]:
        yield b'{"base_url": "http://x", "spec": "'
        for _ in range(100):
            yield b"#" * 1000
        yield b'"}'

    streamed = client.post("/v1/runs", content=chunks(),
                           headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert "64000 bytes" in streamed.json()["detail"]
    with ctx.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Run)) == 0


def test_webhook_over_http_and_replay(api: tuple[AppContext, httpx.Client]) -> None:
    ctx, client = api
    body = (GITHUB_FIXTURES / "pull_request.opened.json").read_bytes()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Hook-ID": "292430182",
               "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
               "Content-Type": "application/json", "X-Hub-Signature-256": signature}
    unsigned = httpx.post(f"{base(client)}/webhooks/github", content=body,
                          headers={k: v for k, v in headers.items()
                                   if k != "X-Hub-Signature-256"})
    assert unsigned.status_code == 401
    first = httpx.post(f"{base(client)}/webhooks/github", content=body, headers=headers)
    assert first.status_code == 202 and first.json()["status"] == "queued"
    replay = httpx.post(f"{base(client)}/webhooks/github", content=body, headers=headers)
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    with ctx.db.session() as s:
        assert [s.scalar(select(func.count()).select_from(t)) for t in (Delivery, Change, Run)] \
            == [1, 1, 1]
    assert ctx.enqueued == [first.json()["run_id"]]  # type: ignore[attr-defined]
