"""POST /webhooks/github: signatures, ping, pull_request → Change + Run, replays, other actions.

Bodies are GitHub's real payloads from tests/fixtures/github/, signed byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from diffie.api import create_app
from diffie.app_context import AppContext
from diffie.models import Change, Delivery, Run
from tests.conftest import GITHUB_FIXTURES

SECRET = "It's a Secret to Everybody"
HEAD_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


def fixture(name: str) -> bytes:
    return (GITHUB_FIXTURES / name).read_bytes()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(event: str, body: bytes, *, delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            hook: str = "292430182", signature: str | None = None) -> dict[str, str]:
    h = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "X-GitHub-Hook-ID": hook,
         "Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/044aadd"}
    sig = sign(body) if signature is None else signature
    if sig:
        h["X-Hub-Signature-256"] = sig
    return h


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    ctx.settings.github_webhook_secret = SECRET
    with TestClient(create_app(context=ctx)) as c:
        yield c


def counts(ctx: AppContext) -> tuple[int, int, int]:
    with ctx.db.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) or 0  # type: ignore[return-value]
                     for t in (Delivery, Change, Run))


def post(client: TestClient, event: str, body: bytes, **kw: Any) -> Any:
    return client.post("/webhooks/github", content=body, headers=headers(event, body, **kw))


def test_documented_signature_vector(client: TestClient, ctx: AppContext) -> None:
    body = b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(body) == expected
    # The signature is accepted (the body is then refused as JSON, not as unsigned) ...
    resp = post(client, "ping", body, signature=expected)
    assert resp.status_code == 422 and "not JSON" in resp.text
    # ... and one flipped hex digit is not.
    wrong = expected[:-1] + ("0" if expected[-1] != "0" else "1")
    assert post(client, "ping", body, signature=wrong).status_code == 401
    assert counts(ctx) == (0, 0, 0)


@pytest.mark.parametrize("signature", ["", "sha256=", "sha1=757107ea0eb2509fc211221cce984b8a",
                                       "sha256=" + "0" * 64, "garbage"])
def test_missing_or_wrong_signature_is_401_and_records_nothing(
        client: TestClient, ctx: AppContext, signature: str) -> None:
    body = fixture("pull_request.opened.json")
    resp = post(client, "pull_request", body, signature=signature)
    assert resp.status_code == 401
    assert counts(ctx) == (0, 0, 0) and ctx.enqueued == []  # type: ignore[attr-defined]


def test_signed_with_another_secret_is_401(client: TestClient, ctx: AppContext) -> None:
    body = fixture("pull_request.opened.json")
    assert post(client, "pull_request", body, signature=sign(body, "other")).status_code == 401
    assert counts(ctx) == (0, 0, 0)


def test_ping_is_answered(client: TestClient, ctx: AppContext) -> None:
    resp = post(client, "ping", fixture("ping.json"))
    assert resp.status_code == 200
    assert resp.json()["status"] == "pong" and resp.json()["zen"]
    assert counts(ctx) == (1, 0, 0)


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened", "ready_for_review"])
def test_pull_request_records_change_and_queued_run(client: TestClient, ctx: AppContext,
                                                    action: str) -> None:
    body = fixture(f"pull_request.{action}.json")
    resp = post(client, "pull_request", body)
    assert resp.status_code == 202, resp.text
    run_id = resp.json()["run_id"]
    assert resp.json()["status"] == "queued"
    assert ctx.enqueued == [run_id]  # type: ignore[attr-defined]
    payload = json.loads(body)
    with ctx.db.session() as s:
        run = s.get(Run, run_id)
        assert run is not None and run.status == "queued"
        c = run.change
        assert (c.mode, c.gh_owner, c.gh_repo, c.pr_number, c.installation_id) == \
            ("github", "Codertocat", "Hello-World", 2, 1)
        assert (c.base_rev, c.head_rev) == (payload["pull_request"]["base"]["sha"], HEAD_SHA)
        assert c.repo == "https://github.com/Codertocat/Hello-World.git"
        delivery = s.scalars(select(Delivery)).one()
        assert (delivery.hook_id, delivery.event, delivery.action, delivery.run_id) == \
            ("292430182", "pull_request", action, run_id)


def test_replayed_delivery_records_nothing_new(client: TestClient, ctx: AppContext) -> None:
    body = fixture("pull_request.opened.json")
    first = post(client, "pull_request", body)
    assert first.status_code == 202
    before = counts(ctx)
    again = post(client, "pull_request", body)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert counts(ctx) == before == (1, 1, 1)
    assert len(ctx.enqueued) == 1  # type: ignore[attr-defined]
    # The same signed body under another hook (an unsigned header) is the same delivery ...
    assert post(client, "pull_request", body, hook="99").json()["status"] == "duplicate"
    # ... while the same delivery id from another hook, with its own body, is another one.
    other_body = body.replace(b'"title": "Update the README with new information."',
                              b'"title": "Another hook"')
    assert other_body != body
    other = post(client, "pull_request", other_body, hook="99")
    assert other.status_code == 202, other.text
    assert counts(ctx)[0] == 2


def test_new_push_supersedes_the_queued_run(client: TestClient, ctx: AppContext) -> None:
    first = post(client, "pull_request", fixture("pull_request.opened.json"), delivery="d1")
    second = post(client, "pull_request", fixture("pull_request.synchronize.json"), delivery="d2")
    assert second.json()["superseded"] == [first.json()["run_id"]]
    with ctx.db.session() as s:
        assert s.get(Run, first.json()["run_id"]).status == "cancelled"  # type: ignore[union-attr]
        assert s.get(Run, second.json()["run_id"]).status == "queued"  # type: ignore[union-attr]


def test_closed_cancels_and_other_events_are_ignored(client: TestClient, ctx: AppContext) -> None:
    opened = post(client, "pull_request", fixture("pull_request.opened.json"), delivery="d1")
    closed = post(client, "pull_request", fixture("pull_request.closed.json"), delivery="d2")
    assert closed.status_code == 202
    assert closed.json() == {"status": "cancelled", "runs": [opened.json()["run_id"]],
                             "reason": "pull request closed"}
    suite = post(client, "check_suite", fixture("check_suite.requested.json"), delivery="d3")
    assert suite.status_code == 202 and suite.json()["status"] == "ignored"
    issues = post(client, "issues", b'{"action": "opened"}', delivery="d4")
    assert issues.status_code == 202 and issues.json()["status"] == "ignored"
    assert counts(ctx) == (4, 1, 1)


def test_draft_pull_requests_are_skipped(client: TestClient, ctx: AppContext) -> None:
    body = json.loads(fixture("pull_request.opened.json"))
    body["pull_request"]["draft"] = True
    raw = json.dumps(body).encode()
    resp = post(client, "pull_request", raw)
    assert resp.status_code == 202 and resp.json()["status"] == "ignored"
    assert "draft" in resp.json()["reason"]
    assert counts(ctx) == (1, 0, 0)


def test_malformed_payloads_are_422_and_record_nothing(client: TestClient,
                                                       ctx: AppContext) -> None:
    assert post(client, "pull_request", b'{"action": "opened",').status_code == 422
    resp = post(client, "pull_request", b'{"action": "opened", "pull_request": {}}')
    assert resp.status_code == 422 and "payload" in resp.text
    body = fixture("pull_request.opened.json")
    h = headers("pull_request", body)
    del h["X-GitHub-Delivery"]
    resp = client.post("/webhooks/github", content=body, headers=h)
    assert resp.status_code == 422 and "X-GitHub-Delivery" in resp.text
    assert counts(ctx) == (0, 0, 0)


def test_webhooks_off_without_a_secret(ctx: AppContext) -> None:
    with TestClient(create_app(context=ctx)) as client:
        resp = post(client, "ping", fixture("ping.json"))
    assert resp.status_code == 503 and "DIFFIE_GITHUB_WEBHOOK_SECRET" in resp.text


def test_oversized_delivery_is_413(ctx: AppContext) -> None:
    ctx.settings.github_webhook_secret = SECRET
    ctx.settings.max_body_bytes = 4096
    with TestClient(create_app(context=ctx)) as client:
        resp = post(client, "pull_request", fixture("pull_request.opened.json"))
    assert resp.status_code == 413
    assert counts(ctx) == (0, 0, 0)
