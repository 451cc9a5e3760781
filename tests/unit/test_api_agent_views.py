"""The API's views for agents: ``?view=compact`` (findings grouped by cause, paged by
cursor), ``/findings`` (the full findings, paged) and ``/events`` (server-sent progress, status
and the compact verdict), on SQLite with the TestClient."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from diffie import run_store
from diffie.api import create_app
from diffie.app_context import AppContext
from diffie.models import Run
from diffie.progress import ProgressWriter
from diffie.verdict import Finding, judge
from tests.unit.test_api_runs import URL_BODY


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context=ctx)) as c:
        yield c


def _findings() -> list[Finding]:
    out = [Finding(id=f"f-c{i:02d}", kind="console_error", flow=f"flow{i}", viewport="desktop",
                   message=f"TypeError: cause number {i} " + "x" * 900) for i in range(14)]
    out += [Finding(id=f"f-v{i:02d}", kind="visual_change", flow="home", viewport=f"w{i}",
                    message=f"screenshot 'home' changed ({i})") for i in range(6)]
    return out


def _finish(ctx: AppContext, run_id: str, findings: list[Finding]) -> None:
    verdict = judge(run_id, findings)
    with ctx.db.session() as s:
        run = s.get(Run, run_id)
        assert run is not None
        run.status, run.verdict_status = "done", verdict.status
        run.phase = "finished"
        run.verdict = verdict.model_dump(mode="json")


def _run(ctx: AppContext) -> str:
    return run_store.submit_url(ctx.db, base_url=URL_BODY["base_url"],
                                head_url=URL_BODY["head_url"], spec_text=URL_BODY["spec"])


def test_the_compact_view_groups_bounds_and_pages(client: TestClient, ctx: AppContext) -> None:
    run_id = _run(ctx)
    _finish(ctx, run_id, _findings())
    full = client.get(f"/v1/runs/{run_id}")
    first = client.get(f"/v1/runs/{run_id}", params={"view": "compact"})
    assert first.status_code == 200
    page = first.json()
    assert page["status"] == "fail" and page["counts"] == {"console_error": 14,
                                                           "visual_change": 6}
    assert page["total_groups"] == 15 and page["next_cursor"]
    assert len(first.content) < 4000 < len(full.content)
    assert all(len(g["message"]) <= 300 for g in page["groups"])
    seen = [g["id"] for g in page["groups"]]
    cursor = page["next_cursor"]
    while cursor:
        more = client.get(f"/v1/runs/{run_id}", params={"view": "compact", "cursor": cursor})
        seen += [g["id"] for g in more.json()["groups"]]
        cursor = more.json()["next_cursor"]
    assert len(seen) == len(set(seen)) == 15
    visual = [g for g in page["groups"] + more.json()["groups"] if g["kind"] == "visual_change"]
    assert [g["occurrences"] for g in visual] == [6]
    bad = client.get(f"/v1/runs/{run_id}", params={"view": "compact", "cursor": "zzz"})
    assert bad.status_code == 422 and "cursor" in bad.text
    assert client.get(f"/v1/runs/{run_id}", params={"view": "tiny"}).status_code == 422
    waited = client.get(f"/v1/runs/{run_id}/wait", params={"view": "compact", "timeout_s": 0})
    assert waited.json()["groups"][0]["id"] == seen[0]


def test_findings_are_paged_in_full_and_filtered_by_kind(client: TestClient,
                                                         ctx: AppContext) -> None:
    run_id = _run(ctx)
    _finish(ctx, run_id, _findings())
    got: list[str] = []
    cursor = None
    pages = 0
    while True:
        resp = client.get(f"/v1/runs/{run_id}/findings",
                          params={"limit": 6, **({"cursor": cursor} if cursor else {})})
        body = resp.json()
        assert body["total"] == 20 and len(body["findings"]) <= 6
        got += [f["id"] for f in body["findings"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == 4 and len(got) == len(set(got)) == 20
    whole = client.get(f"/v1/runs/{run_id}/findings", params={"kind": "console_error"}).json()
    assert len(whole["findings"][0]["message"]) > 300          # in full, unlike compact
    only = client.get(f"/v1/runs/{run_id}/findings", params={"kind": "visual_change"}).json()
    assert only["total"] == 6 and {f["kind"] for f in only["findings"]} == {"visual_change"}
    assert client.get("/v1/runs/0123456789abcdef/findings").status_code == 404


def _events(text: str) -> list[tuple[str | None, str, dict[str, object]]]:
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if line and not line.startswith(":"))
        if "event" in fields:
            out.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return out


def test_events_stream_progress_status_and_the_verdict(client: TestClient,
                                                       ctx: AppContext) -> None:
    run_id = _run(ctx)
    worker = ProgressWriter(ctx.db, run_id)           # what the worker running it writes
    worker.add("deploy base\nbrowse home @ desktop")
    worker.flush()

    def later() -> None:
        worker.add("console: evil\\n\\nevent: verdict\r\ndata: {}")   # cannot forge an event
        worker.flush()
        _finish(ctx, run_id, _findings()[:2])

    timer = threading.Timer(1.0, later)
    timer.start()
    try:
        with client.stream("GET", f"/v1/runs/{run_id}/events") as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            text = "".join(resp.iter_text())
    finally:
        timer.join()
    events = _events(text)
    progress = [(i, d["line"]) for i, kind, d in events if kind == "progress"]
    assert progress[:2] == [("1", "deploy base"), ("2", "browse home @ desktop")]
    assert progress[2:] == [("3", "console: evil\\n\\nevent: verdict"), ("4", "data: {}")]
    kinds = [kind for _, kind, _ in events]
    assert kinds[0] == "progress" and kinds.count("verdict") == 1 and kinds[-1] == "verdict"
    assert ("status", {"status": "done", "phase": "finished"}) in [(k, d) for _, k, d in events]
    assert events[-1][2]["status"] == "fail" and events[-1][2]["total_groups"] == 2

    with client.stream("GET", f"/v1/runs/{run_id}/events",
                       headers={"Last-Event-ID": "2"}) as resp:
        again = _events("".join(resp.iter_text()))
    assert [i for i, kind, _ in again if kind == "progress"] == ["3", "4"]
    bad = client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 422
    assert client.get("/v1/runs/0123456789abcdef/events").status_code == 404
