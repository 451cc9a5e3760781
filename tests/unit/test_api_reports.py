"""The report, the artifacts and the verdict schema over the API (TestClient, SQLite)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from diffie import run_store
from diffie.api import create_app
from diffie.app_context import AppContext
from diffie.artifacts import ArtifactDir
from diffie.render.html import script_hash
from diffie.render.schema import SCHEMA_PATH
from diffie.verdict import Finding, judge

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context=ctx)) as c:
        yield c


@pytest.fixture
def done_run(ctx: AppContext) -> str:
    run_id = run_store.submit_url(ctx.db, base_url="http://b", head_url="http://h",
                             spec_text="flows: []")
    assert run_store.claim(ctx.db, run_id, "w1", stale_after_s=60, max_attempts=3) == "claimed"
    out = ArtifactDir(ctx.settings.artifacts_dir / run_id).ensure()
    verdict = judge(run_id, [Finding(kind="page_error", flow="home", viewport="desktop", step=1,
                                     message="TypeError: boom", evidence=["head-home.png"])])
    out.path("index.html").write_text("<!doctype html><title>report</title>"
                                      '<img src="head-home.png">')
    out.path("head-home.png").write_bytes(PNG)
    out.path("verdict.json").write_text(verdict.model_dump_json())
    out.path("head-home-desktop-trace.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    out.path("junit.xml").write_text("<testsuites/>")
    assert run_store.record_verdict(ctx.db, run_id, "w1", verdict, out)
    return run_id


def test_report_html_and_its_relative_links(client: TestClient, done_run: str) -> None:
    for path in ("report", "report/"):
        page = client.get(f"/v1/runs/{done_run}/{path}", follow_redirects=False)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert f"script-src {script_hash()};" in csp      # the report's own script, by hash
        assert page.headers["x-content-type-options"] == "nosniff"
    # the page's relative image link resolves to a served artifact, from either URL
    for path in ("head-home.png", "report/head-home.png"):
        img = client.get(f"/v1/runs/{done_run}/{path}")
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        assert img.content == PNG
    assert client.get(f"/v1/runs/{done_run}/nodot").status_code == 404


@pytest.mark.parametrize(("name", "media_type"), [
    ("head-home.png", "image/png"),
    ("verdict.json", "application/json"),
    ("junit.xml", "application/xml"),
    ("head-home-desktop-trace.zip", "application/zip"),
    ("index.html", "text/html; charset=utf-8"),
])
def test_artifacts_have_their_media_type(client: TestClient, done_run: str, name: str,
                                         media_type: str) -> None:
    resp = client.get(f"/v1/runs/{done_run}/artifacts/{name}")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == media_type
    if name.endswith(".zip"):
        assert resp.headers["content-disposition"] == f'attachment; filename="{name}"'


def test_verdict_artifact_and_run_agree(client: TestClient, done_run: str) -> None:
    run = client.get(f"/v1/runs/{done_run}").json()
    assert run["status"] == "done" and run["verdict_status"] == "fail"
    served = client.get(f"/v1/runs/{done_run}/artifacts/verdict.json").json()
    assert served["status"] == run["verdict"]["status"] == "fail"
    names = {a["name"] for a in run["artifacts"]}
    assert {"index.html", "head-home.png", "verdict.json"} <= names
    assert all(a["url"].endswith(f"/artifacts/{a['name']}") for a in run["artifacts"])


@pytest.mark.parametrize("name", ["..%2Fdiffie.db", "%2E%2E", ".hidden", "a%2Fb",
                                  "missing.png", "index.html%00.png", "x..png"])
def test_unsafe_or_unknown_names_are_404(client: TestClient, done_run: str, name: str) -> None:
    resp = client.get(f"/v1/runs/{done_run}/artifacts/{name}")
    assert resp.status_code == 404


def test_report_of_a_queued_run_is_404(client: TestClient, ctx: AppContext) -> None:
    run_id = run_store.submit_url(ctx.db, base_url="http://b", head_url="http://h", spec_text="x")
    resp = client.get(f"/v1/runs/{run_id}/report")
    assert resp.status_code == 404 and "queued" in resp.json()["detail"]
    assert client.get("/v1/runs/nope/report").status_code == 404


def test_verdict_schema_is_the_committed_file(client: TestClient) -> None:
    resp = client.get("/v1/schema/verdict.json")
    assert resp.status_code == 200
    assert resp.json() == json.loads(SCHEMA_PATH.read_text())
    assert "findings" in resp.json()["properties"]


def test_openapi_documents_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/report",
                 "/v1/runs/{run_id}/artifacts/{name}", "/v1/schema/verdict.json",
                 "/webhooks/github"):
        assert path in paths
