"""Webhook payloads (GitHub's own examples, tests/fixtures/github) → events → decisions."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from typing import Any

import pytest

from diffie.config import Settings
from diffie.github.webhook_events import (
    ActionKind,
    CheckRunEvent,
    CheckSuiteEvent,
    PayloadError,
    PingEvent,
    PullRequestEvent,
    decide,
    parse_event,
    verify_signature,
)
from tests.paths import FIXTURES as SHARED_FIXTURES

FIXTURES = SHARED_FIXTURES / "github"
HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
BASE = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"


def load(name: str) -> tuple[str, bytes]:
    """(event name from the file name, exact body bytes)."""
    return name.split(".")[0], (FIXTURES / f"{name}.json").read_bytes()


def settings(**kw: Any) -> Settings:
    """Settings independent of the developer's DIFFIE_* environment."""
    return Settings(**{"github_app_id": "", "github_process_drafts": False, **kw})


# every fixture and what Diffie does with it (default settings: drafts skipped, no app id)
EXPECTED = {
    "pull_request.opened": ActionKind.ENQUEUE,
    "pull_request.synchronize": ActionKind.ENQUEUE,
    "pull_request.reopened": ActionKind.ENQUEUE,
    "pull_request.ready_for_review": ActionKind.ENQUEUE,
    "pull_request.closed": ActionKind.CANCEL_PR_RUNS,
    "pull_request.converted_to_draft": ActionKind.CANCEL_PR_RUNS,
    "check_run.rerequested": ActionKind.RERUN,
    "check_run.requested_action": ActionKind.IGNORE,     # identifier "lgtm|26764": not ours
    "check_suite.rerequested": ActionKind.RERUN,
    "check_suite.requested": ActionKind.IGNORE,
    "ping": ActionKind.IGNORE,
    "ping.with-app_id": ActionKind.IGNORE,
}


def test_every_fixture_is_covered() -> None:
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_decision(name: str) -> None:
    event_name, body = load(name)
    action = decide(parse_event(event_name, body), settings())
    assert action.kind == EXPECTED[name], action.reason


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened", "ready_for_review"])
def test_pull_request_enqueue_carries_the_change_and_supersedes(action: str) -> None:
    ev = parse_event(*load(f"pull_request.{action}"))
    assert isinstance(ev, PullRequestEvent)
    assert (ev.action, ev.installation_id, ev.owner, ev.repo, ev.number) == \
        (action, 1, "Codertocat", "Hello-World", 2)
    assert (ev.base_sha, ev.head_sha) == (BASE, HEAD)
    assert ev.head_clone_url == ev.base_clone_url == "https://github.com/Codertocat/Hello-World.git"
    assert ev.is_fork is False and ev.draft is False
    assert ev.title == "Update the README with new information."
    decision = decide(ev, settings())
    assert decision.kind == ActionKind.ENQUEUE and decision.supersede
    assert decision.pull_request == ev
    assert (decision.owner, decision.repo, decision.pr_number, decision.head_sha) == \
        ("Codertocat", "Hello-World", 2, HEAD)


def test_closed_cancels_the_pull_requests_runs() -> None:
    decision = decide(parse_event(*load("pull_request.closed")), settings())
    assert decision.kind == ActionKind.CANCEL_PR_RUNS
    assert (decision.owner, decision.repo, decision.pr_number) == ("Codertocat", "Hello-World", 2)


def test_drafts_are_skipped_unless_configured() -> None:
    name, body = load("pull_request.opened")
    data = json.loads(body)
    data["pull_request"]["draft"] = True
    ev = parse_event(name, data)
    assert decide(ev, settings()).kind == ActionKind.IGNORE
    assert decide(ev, settings(github_process_drafts=True)).kind == ActionKind.ENQUEUE
    data["action"] = "synchronize"
    assert decide(parse_event(name, data), settings()).kind == ActionKind.CANCEL_PR_RUNS
    draft = parse_event(*load("pull_request.converted_to_draft"))
    assert isinstance(draft, PullRequestEvent) and draft.draft
    assert decide(draft, settings(github_process_drafts=True)).kind == ActionKind.IGNORE


def test_ready_for_review_is_processed_even_when_drafts_are_skipped() -> None:
    ev = parse_event(*load("pull_request.ready_for_review"))
    assert decide(ev, settings(github_process_drafts=False)).kind == ActionKind.ENQUEUE


def test_other_pull_request_actions_are_ignored() -> None:
    name, body = load("pull_request.opened")
    data = json.loads(body)
    data["action"] = "labeled"
    assert decide(parse_event(name, data), settings()).kind == ActionKind.IGNORE


def test_fork_pull_request_is_detected() -> None:
    name, body = load("pull_request.opened")
    data = json.loads(body)
    head_repo = data["pull_request"]["head"]["repo"]
    head_repo["full_name"] = "forker/Hello-World"
    head_repo["clone_url"] = "https://github.com/forker/Hello-World.git"
    ev = parse_event(name, data)
    assert isinstance(ev, PullRequestEvent)
    assert ev.is_fork and ev.head_clone_url == "https://github.com/forker/Hello-World.git"
    assert ev.owner == "Codertocat"        # the check run and comment go to the base repo
    data["pull_request"]["head"]["repo"] = None          # fork deleted
    gone = parse_event(name, data)
    assert isinstance(gone, PullRequestEvent) and gone.is_fork and gone.head_clone_url is None


def test_check_run_rerequested() -> None:
    ev = parse_event(*load("check_run.rerequested"))
    assert isinstance(ev, CheckRunEvent)
    assert (ev.check_run_id, ev.name, ev.app_id, ev.external_id) == (4, "randscape", 2, "")
    action = decide(ev, settings())
    assert action.kind == ActionKind.RERUN
    assert action.head_sha == "d6fde92930d4715a2b49857d24b940956b26d2d3"
    assert action.run_id is None and action.check_run_id == 4 and action.installation_id == 1
    assert decide(ev, settings(github_app_id="2")).kind == ActionKind.RERUN
    assert decide(ev, settings(github_app_id="999")).kind == ActionKind.IGNORE   # not our check


def test_check_run_requested_action_approve() -> None:
    name, body = load("check_run.requested_action")
    ev = parse_event(name, body)
    assert isinstance(ev, CheckRunEvent) and ev.requested_action == "lgtm|26764"
    assert ev.pull_requests[0].number == 26764
    data = json.loads(body)
    data["requested_action"]["identifier"] = "approve"
    data["check_run"]["external_id"] = "run123"
    action = decide(parse_event(name, data), settings())
    assert action.kind == ActionKind.APPROVE
    assert (action.run_id, action.check_run_id, action.pr_number) == ("run123", 1494503112, 26764)
    assert (action.owner, action.repo, action.installation_id) == ("electron", "electron", 690857)


def test_check_suite_rerequested_reruns_the_pull_request() -> None:
    ev = parse_event(*load("check_suite.rerequested"))
    assert isinstance(ev, CheckSuiteEvent)
    action = decide(ev, settings())
    assert action.kind == ActionKind.RERUN
    assert (action.head_sha, action.pr_numbers, action.pr_number, action.installation_id) == \
        (HEAD, (2,), 2, 957387)
    assert decide(ev, settings(github_app_id="29310")).kind == ActionKind.RERUN
    assert decide(ev, settings(github_app_id="1")).kind == ActionKind.IGNORE


def test_ping() -> None:
    ev = parse_event(*load("ping.with-app_id"))
    assert isinstance(ev, PingEvent) and ev.app_id == 29310 and ev.hook_id == 109948940
    assert decide(ev, settings()).reason == "ping"


def test_unhandled_event_is_ignored() -> None:
    assert decide(parse_event("issues", {"action": "opened"}), settings()).kind == \
        ActionKind.IGNORE


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["pull_request"]["head"].pop("sha"), "pull_request.head.sha"),
    (lambda d: d["pull_request"]["head"].__setitem__("sha", "--upload-pack=x"), "SHA"),
    (lambda d: d["repository"].__setitem__("name", "../etc"), "repository name"),
    (lambda d: d.pop("installation"), "installation.id"),
    (lambda d: d["pull_request"].__setitem__("number", "2"), "not an integer"),
])
def test_malformed_payloads_raise_payload_error(mutate: Any, message: str) -> None:
    name, body = load("pull_request.opened")
    data = copy.deepcopy(json.loads(body))
    mutate(data)
    with pytest.raises(PayloadError, match=message):
        parse_event(name, data)


def test_non_json_body() -> None:
    with pytest.raises(PayloadError):
        parse_event("pull_request", b"{not json")
    with pytest.raises(PayloadError):
        parse_event("pull_request", b"[1]")


def test_signature_documented_test_vector() -> None:
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert verify_signature(secret, body, good)
    assert not verify_signature(secret, body + b" ", good)
    assert not verify_signature(secret, body, None)
    assert not verify_signature("", body, good)
    assert not verify_signature(secret, body, good.replace("sha256=", "sha1="))


def test_signature_over_exact_fixture_bytes() -> None:
    _, body = load("pull_request.opened")
    sig = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert verify_signature("s3cret", body, sig)
    assert not verify_signature("s3cret", json.dumps(json.loads(body)).encode(), sig)
