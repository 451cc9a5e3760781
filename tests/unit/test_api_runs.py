"""POST/GET /v1/runs with FastAPI's TestClient on SQLite (the queue records run ids)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from diffie.api import create_app
from diffie.app_context import AppContext
from diffie.models import Run
from tests.conftest import make_repo

SPEC = "flows:\n  - name: home\n    steps:\n      - goto: /\n      - screenshot: home\n"
URL_BODY = {"base_url": "http://127.0.0.1:8001", "head_url": "http://127.0.0.1:8002",
            "spec": SPEC}


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context=ctx)) as c:
        yield c


def _error(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert isinstance(detail, list) and detail
    first: dict[str, Any] = detail[0]
    return first


def test_submit_url_mode_answers_202_and_enqueues(client: TestClient, ctx: AppContext) -> None:
    resp = client.post("/v1/runs", json={**URL_BODY, "title": "my change"})
    assert resp.status_code == 202
    body = resp.json()
    run_id = body["id"]
    assert body["status"] == "queued"
    assert body["links"]["self"].endswith(f"/v1/runs/{run_id}")
    assert f"/v1/runs/{run_id}/signed/" in body["links"]["report"]      # signed: no token needed
    assert body["links"]["report"].endswith("/report/")
    assert resp.headers["location"] == body["links"]["self"]
    assert ctx.enqueued == [run_id]  # type: ignore[attr-defined]
    with ctx.db.session() as s:
        run = s.get(Run, run_id)
        assert run is not None and run.status == "queued"
        assert (run.change.mode, run.change.base_url, run.change.spec_text) == \
            ("url", URL_BODY["base_url"], SPEC)

    got = client.get(f"/v1/runs/{run_id}").json()
    assert (got["id"], got["status"], got["phase"], got["verdict"]) == \
        (run_id, "queued", "queued", None)
    assert got["change"]["mode"] == "url" and got["change"]["title"] == "my change"
    assert got["created_at"].endswith(("Z", "+00:00"))          # UTC, on SQLite too
    assert client.get("/v1/runs").json()[0]["id"] == run_id


def test_flows_shorthand_and_spec_as_object(client: TestClient) -> None:
    flows = [{"name": "home", "steps": [{"goto": "/"}, {"screenshot": "home"}]}]
    base = {k: URL_BODY[k] for k in ("base_url", "head_url")}
    assert client.post("/v1/runs", json={**base, "flows": flows}).status_code == 202
    assert client.post("/v1/runs", json={**base, "spec": {"flows": flows}}).status_code == 202
    err = _error(client.post("/v1/runs", json={**base, "flows": [{"name": "x", "steps": [
        {"goto": "/"}, {"click": None}]}]}))
    assert err["loc"] == ["body", "flows"]
    assert err["ctx"]["field"] == "flows[0].steps[1]"


def test_invalid_spec_names_line_and_field(client: TestClient, ctx: AppContext) -> None:
    bad = "flows:\n  - name: home\n    steps:\n      - goto: /\n      - click: {timeout_ms: 3}\n"
    err = _error(client.post("/v1/runs", json={**URL_BODY, "spec": bad}))
    assert err["loc"] == ["body", "spec"]
    assert err["type"] == "spec_error"
    assert err["ctx"]["line"] == 5
    assert err["ctx"]["field"] == "flows[0].steps[1]"
    assert ".diffie.yml:5 (flows[0].steps[1]): a click step needs a selector" in err["msg"]
    assert ctx.enqueued == []  # type: ignore[attr-defined]
    with ctx.db.session() as s:
        assert s.query(Run).count() == 0


@pytest.mark.parametrize(("body", "loc"), [
    ({"head_url": "http://h", "spec": SPEC}, ["body", "base_url"]),
    ({"base_url": "http://b", "spec": SPEC}, ["body", "head_url"]),
    ({"base_url": "http://b", "head_url": "http://h"}, ["body", "spec"]),
    ({**URL_BODY, "flows": []}, ["body", "flows"]),
    ({**URL_BODY, "base_url": "ftp://x"}, ["body", "base_url"]),
    ({**URL_BODY, "head_url": "not a url"}, ["body", "head_url"]),
    ({**URL_BODY, "repo": "/tmp"}, ["body", "repo"]),
    ({**URL_BODY, "colour": "red"}, ["body", "colour"]),
    ({}, ["body"]),
    ({"repo": "/nowhere", "base": "a"}, ["body", "head"]),
])
def test_validation_names_the_field(client: TestClient, body: dict[str, Any],
                                    loc: list[str]) -> None:
    assert _error(client.post("/v1/runs", json=body))["loc"] == loc


def test_malformed_json_is_422(client: TestClient) -> None:
    resp = client.post("/v1/runs", content=b'{"base_url": ', headers={
        "content-type": "application/json"})
    assert _error(resp)["type"] == "json_invalid"


def test_oversized_body_is_413(ctx: AppContext) -> None:
    ctx.settings.max_body_bytes = 2000
    with TestClient(create_app(context=ctx)) as client:
        big = {**URL_BODY, "spec": SPEC + "#" * 5000}
        resp = client.post("/v1/runs", json=big)
        assert resp.status_code == 413
        assert "2000 bytes" in resp.json()["detail"]
        assert client.post("/v1/runs", json=URL_BODY).status_code == 202
    assert len(ctx.enqueued) == 1  # type: ignore[attr-defined]


def test_bearer_tokens(ctx: AppContext) -> None:
    ctx.settings.api_tokens = ["t0ken-a", "t0ken-b"]
    with TestClient(create_app(context=ctx)) as client:
        resp = client.post("/v1/runs", json=URL_BODY)
        assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/runs/x", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get("/v1/schema/verdict.json").status_code == 401
        ok = client.post("/v1/runs", json=URL_BODY, headers={"Authorization": "Bearer t0ken-b"})
        assert ok.status_code == 202
        assert client.get("/health").status_code == 200          # not under /v1
        assert client.get("/docs").status_code == 200


def test_unknown_run_is_404(client: TestClient) -> None:
    assert client.get("/v1/runs/0123456789abcdef").status_code == 404


def test_enqueue_failure_ends_the_run_in_error(ctx: AppContext) -> None:
    def broken(run_id: str) -> None:
        raise ConnectionError("broker down")

    ctx.enqueue_fn = broken
    with TestClient(create_app(context=ctx)) as client:
        resp = client.post("/v1/runs", json=URL_BODY)
    assert resp.status_code == 503 and "broker down" in resp.json()["detail"]
    with ctx.db.session() as s:
        run = s.query(Run).one()
        assert run.status == "error" and "could not reach the queue" in (run.reason or "")


# --- repo mode ----------------------------------------------------------------------------------

REPO_SPEC = SPEC + "sandbox:\n  image: shop\n  deploy: [make]\n"


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, list[str]]:
    return make_repo(tmp_path, [{"README": "v1\n", ".diffie.yml": REPO_SPEC},
                                {"README": "v2\n"},
                                {".diffie.yml": REPO_SPEC.replace("goto: /", "clik: /")},
                                {".diffie.yml": SPEC}])


def test_submit_repo_mode(client: TestClient, ctx: AppContext,
                          repo: tuple[Path, list[str]]) -> None:
    path, shas = repo
    resp = client.post("/v1/runs", json={"repo": str(path), "base": shas[0], "head": "HEAD~2"})
    assert resp.status_code == 202, resp.text
    with ctx.db.session() as s:
        change = s.get(Run, resp.json()["id"]).change  # type: ignore[union-attr]
        assert (change.mode, change.repo, change.base_rev, change.head_rev, change.spec_path) == \
            ("repo", str(path), shas[0], "HEAD~2", ".diffie.yml")


@pytest.mark.parametrize(("make_body", "loc", "words"), [
    (lambda p, s: {"repo": str(p / "nope"), "base": s[0], "head": s[1]}, "repo",
     "does not exist"),
    (lambda p, s: {"repo": str(p.parent), "base": s[0], "head": s[1]}, "repo",
     "not a git repository"),
    (lambda p, s: {"repo": str(p), "base": "v9", "head": s[1]}, "base", "'v9' not found"),
    (lambda p, s: {"repo": str(p), "base": s[0], "head": "--upload-pack=x"}, "head",
     "invalid revision"),
    (lambda p, s: {"repo": str(p), "base": s[0], "head": s[1], "spec_path": "ci/diffie.yml"},
     "spec_path", "ci/diffie.yml not found"),
    (lambda p, s: {"repo": str(p), "base": s[0], "head": s[2]}, "spec_path",
     ".diffie.yml:4 (flows[0].steps[0])"),
    (lambda p, s: {"repo": str(p), "base": s[0], "head": s[3]}, "spec_path",
     "no 'sandbox' section"),
])
def test_repo_mode_errors(client: TestClient, repo: tuple[Path, list[str]], make_body: Any,
                          loc: str, words: str) -> None:
    path, shas = repo
    err = _error(client.post("/v1/runs", json=make_body(path, shas)))
    assert err["loc"] == ["body", loc]
    assert words in err["msg"], err["msg"]


def test_run_view_shows_verdict_and_artifacts(client: TestClient, ctx: AppContext) -> None:
    run_id = client.post("/v1/runs", json=URL_BODY).json()["id"]
    verdict = {"schema_version": "1", "run_id": run_id, "status": "pass", "summary": "ok"}
    with ctx.db.session() as s:
        run = s.get(Run, run_id)
        assert run is not None
        run.status, run.verdict, run.verdict_status = "done", verdict, "pass"
    got = client.get(f"/v1/runs/{run_id}").json()
    link = got["verdict"].pop("report_url")              # signed afresh at each read
    assert got["status"] == "done" and got["verdict"] == verdict
    assert link.startswith(f"{ctx.settings.public_url}/v1/runs/{run_id}/signed/")
    assert json.loads(json.dumps(got)) == got


def test_runs_filter_by_status_knows_waiting_and_refuses_unknown(ctx: AppContext) -> None:
    with TestClient(create_app(context=ctx)) as client:
        assert client.get("/v1/runs", params={"status": "waiting"}).json() == []
        bad = client.get("/v1/runs", params={"status": "paused"})
        assert bad.status_code == 422 and "waiting" in bad.text
