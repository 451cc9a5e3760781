"""Check-run lifecycle, annotations and the PR comment over real HTTP, against the stand-in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from diffie import links
from diffie.config import Settings
from diffie.errors import GitHubUnavailable
from diffie.github import checks
from diffie.github.client import GitHubClient
from diffie.github.comments import MARKER
from diffie.github.publish import publish, publish_cancelled
from diffie.models import Change, Run
from diffie.verdict import Finding, Verdict, error_verdict, judge
from tests.github_standin import GitHubStandIn, app_settings, make_rsa_key

pytestmark = pytest.mark.integration

PRIVATE, PUBLIC = make_rsa_key()
HEAD1, HEAD2, BASE = "1" * 40, "2" * 40, "b" * 40


@pytest.fixture
def standin() -> Iterator[GitHubStandIn]:
    with GitHubStandIn(app_id="4242", public_key_pem=PUBLIC) as s:
        yield s
        assert s.violations == [], s.violations


@pytest.fixture
def settings(tmp_path, standin: GitHubStandIn) -> Settings:
    return app_settings(tmp_path, standin, PRIVATE)


@pytest.fixture
def client(settings: Settings) -> Iterator[GitHubClient]:
    with GitHubClient.from_settings(settings, backoff_s=0.02) as c:
        yield c


def make_run(run_id: str, head: str = HEAD1, number: int = 7) -> Run:
    change = Change(id=f"c-{run_id}", mode="github", installation_id=11, gh_owner="octo",
                    gh_repo="shop", pr_number=number, base_rev=BASE, head_rev=head,
                    repo="https://github.com/octo/shop.git")
    return Run(id=run_id, change=change, status="queued", approved=False, published=False)


def cr_of(standin: GitHubStandIn, run: Run) -> dict[str, Any]:
    assert run.check_run_id is not None
    return standin.check_runs[run.check_run_id]


def assert_signed_report_link(settings: Settings, url: str, run_id: str) -> None:
    """A report link people follow: signed for the public URL, valid now (no token needed)."""
    prefix = f"https://diffie.example.com/v1/runs/{run_id}/signed/"
    assert url.startswith(prefix) and url.endswith("/report/"), url
    expires, sig = url[len(prefix):].split("/")[:2]
    links.check(settings, run_id, "report/", int(expires), sig)


def finding(kind: str = "console_error", message: str = "TypeError: x is undefined",
            **kw: object) -> Finding:
    return Finding.model_validate({"kind": kind, "flow": "cart", "viewport": "desktop",
                                   "step": 3, "message": message, **kw})


def test_lifecycle_queued_in_progress_completed(client: GitHubClient, settings: Settings,
                                                standin: GitHubStandIn) -> None:
    run = make_run("run1")
    check_id = checks.create_queued(client, run, settings)
    assert run.check_run_id == check_id
    cr = standin.check_runs[check_id]
    assert (cr["name"], cr["head_sha"], cr["status"], cr["external_id"]) == \
        ("Diffie", HEAD1, "queued", "run1")
    assert_signed_report_link(settings, cr["details_url"], "run1")

    assert checks.mark_in_progress(client, run, settings) == check_id
    assert cr["status"] == "in_progress" and cr["started_at"]

    verdict = judge("run1", [finding()], flows=3, viewports=2, duration_s=42.0)
    result = publish(run, verdict, settings, client)
    assert (result.check_run_id, result.conclusion) == (check_id, "failure")
    assert (cr["status"], cr["conclusion"]) == ("completed", "failure")
    assert cr["output"]["title"].startswith("Failed")
    assert "TypeError: x is undefined" in cr["output"]["summary"]
    assert run.published is True
    assert len(standin.check_runs) == 1


def test_create_queued_is_idempotent_across_a_lost_commit(client: GitHubClient,
                                                          settings: Settings,
                                                          standin: GitHubStandIn) -> None:
    first = make_run("run2")
    check_id = checks.create_queued(client, first, settings)
    again = make_run("run2")                # the row was never committed: no check_run_id
    assert checks.create_queued(client, again, settings) == check_id
    assert len(standin.check_runs) == 1


@pytest.mark.parametrize("findings, conclusion, with_button", [
    ([], "success", False),
    ([finding("visual_change", "header moved 4px", evidence=["diff-cart.png"])],
     "action_required", True),
    ([finding()], "failure", False),
])
def test_conclusions(client: GitHubClient, settings: Settings, standin: GitHubStandIn,
                     findings: list[Finding], conclusion: str, with_button: bool) -> None:
    run = make_run("run3")
    publish(run, judge("run3", findings), settings, client)
    cr = cr_of(standin, run)
    assert cr["conclusion"] == conclusion
    assert bool(cr["actions"]) == with_button
    if with_button:
        assert cr["actions"][0]["identifier"] == "approve"
        image = cr["images"][0]["image_url"]     # GitHub fetches it without a token: signed
        prefix = "https://diffie.example.com/v1/runs/run3/signed/"
        assert image.startswith(prefix) and image.endswith("/artifacts/diff-cart.png")
        expires, sig = image[len(prefix):].split("/")[:2]
        links.check(settings, "run3", "artifacts/diff-cart.png", int(expires), sig)


def test_error_verdict_is_neutral(client: GitHubClient, settings: Settings,
                                  standin: GitHubStandIn) -> None:
    run = make_run("run4")
    publish(run, error_verdict("run4", "the VM did not boot"), settings, client)
    cr = cr_of(standin, run)
    assert cr["conclusion"] == "neutral"
    assert "the VM did not boot" in cr["output"]["summary"]


def test_approve_turns_the_check_green(client: GitHubClient, settings: Settings,
                                       standin: GitHubStandIn) -> None:
    run = make_run("run5")
    verdict = judge("run5", [finding("visual_change", "layout shift")])
    run.verdict = verdict.model_dump(mode="json")
    publish(run, verdict, settings, client)
    cr = cr_of(standin, run)
    assert cr["conclusion"] == "action_required"
    run.approved = True             # the "Approve changes" button (the plugin republishes)
    result = publish(run, verdict, settings, client)
    assert result.conclusion == "success"
    assert cr["conclusion"] == "success" and cr["actions"] == []
    assert "approved" in cr["output"]["title"].lower()
    (comment,) = standin.comments_on("octo", "shop", 7)
    assert "approved" in comment["body"].lower()


def test_cancelled_and_superseded(client: GitHubClient, settings: Settings,
                                  standin: GitHubStandIn) -> None:
    run = make_run("run6")
    checks.create_queued(client, run, settings)
    publish_cancelled(run, settings, client, reason="Superseded by a newer push (2222222).")
    cr = cr_of(standin, run)
    assert (cr["status"], cr["conclusion"]) == ("completed", "cancelled")
    assert "Superseded" in cr["output"]["summary"]
    # cancelled before its queued job ran: the push still gets a check run saying so
    late = make_run("run7", head=HEAD2)
    publish_cancelled(late, settings, client)
    cr7 = cr_of(standin, late)
    assert (cr7["status"], cr7["conclusion"]) == ("completed", "cancelled")
    assert cr7["head_sha"] == HEAD2 and len(standin.check_runs) == 2


def test_more_than_50_annotations_are_sent_in_batches(client: GitHubClient, settings: Settings,
                                                      standin: GitHubStandIn) -> None:
    run = make_run("run8")
    findings = [finding(message=f"error {i}", details={"path": "static/app.js", "line": i + 1,
                                                       "key": str(i)})
                for i in range(120)]
    verdict = judge("run8", findings)
    publish(run, verdict, settings, client)
    cr = cr_of(standin, run)
    assert len(cr["annotations"]) == 120
    assert cr["output"]["annotations_count"] == 120
    sizes = [len(b.get("output", {}).get("annotations", [])) for b in cr["history"]]
    assert sorted((s for s in sizes if s), reverse=True) == [50, 50, 20]
    # publishing again (a retry, an approval) does not duplicate them
    publish(run, verdict, settings, client)
    assert len(cr["annotations"]) == 120


def test_comment_created_then_updated_not_duplicated(client: GitHubClient, settings: Settings,
                                                     standin: GitHubStandIn) -> None:
    for i in range(130):                      # a busy PR: our comment lands on page 2
        standin.add_comment("octo", "shop", 7, f"human comment {i}")
    first = make_run("run9", head=HEAD1)
    r1 = publish(first, judge("run9", [finding()]), settings, client)
    second = make_run("run10", head=HEAD2)
    r2 = publish(second, judge("run10", []), settings, client)
    ours = [c for c in standin.comments_on("octo", "shop", 7) if c["body"].startswith(MARKER)]
    assert len(ours) == 1
    assert r1.comment_id == r2.comment_id == ours[0]["id"]
    assert "Diffie: pass" in ours[0]["body"] and "TypeError" not in ours[0]["body"]
    link = re.search(r"https://diffie\.example\.com/v1/runs/run10/signed/\S+?/report/",
                     ours[0]["body"])
    assert link, ours[0]["body"]
    assert_signed_report_link(settings, link.group(0), "run10")
    assert len(standin.calls("POST", r"/repos/octo/shop/issues/7/comments")) == 1
    assert len(standin.calls("PATCH", r"/repos/octo/shop/issues/comments/\d+")) == 1
    # two check runs, one per head commit
    assert {cr["head_sha"] for cr in standin.check_runs.values()} == {HEAD1, HEAD2}


def test_a_human_quoting_the_marker_is_not_taken_for_our_comment(
        client: GitHubClient, settings: Settings, standin: GitHubStandIn) -> None:
    standin.add_comment("octo", "shop", 7, f"{MARKER}\nI copied this")
    publish(make_run("run11"), judge("run11", []), settings, client)
    bodies = [c["body"] for c in standin.comments_on("octo", "shop", 7)]
    assert bodies[0] == f"{MARKER}\nI copied this" and len(bodies) == 2


def test_big_verdict_fits_githubs_limits(client: GitHubClient, settings: Settings,
                                         standin: GitHubStandIn) -> None:
    findings = [finding(message="E" * 3000 + str(i), details={"key": str(i)})
                for i in range(500)]
    run = make_run("run12")
    publish(run, judge("run12", findings), settings, client)   # the stand-in checks limits
    cr = cr_of(standin, run)
    assert len(cr["output"]["summary"]) <= 65_535
    (comment,) = standin.comments_on("octo", "shop", 7)
    assert len(comment["body"]) <= 65_536


def test_github_outage_loses_nothing(client: GitHubClient, settings: Settings,
                                     standin: GitHubStandIn) -> None:
    run = make_run("run13")
    checks.create_queued(client, run, settings)
    verdict = judge("run13", [finding("visual_change", "moved")])
    standin.fail_next("PATCH", r"/repos/octo/shop/check-runs/\d+", 502, times=50)
    with pytest.raises(GitHubUnavailable):
        publish(run, verdict, settings, client)
    assert run.published is False
    standin.clear_failures()
    standin.outage = True                        # now the network itself is gone
    with pytest.raises(GitHubUnavailable):
        publish(run, verdict, settings, client)
    standin.outage = False                       # GitHub is back: the retry publishes
    result = publish(run, verdict, settings, client)
    assert result.conclusion == "action_required" and run.published
    assert len(standin.check_runs) == 1
    assert len(standin.comments_on("octo", "shop", 7)) == 1


def test_comment_create_failing_is_not_blindly_repeated(client: GitHubClient,
                                                        settings: Settings,
                                                        standin: GitHubStandIn) -> None:
    standin.fail_next("POST", r"/repos/octo/shop/issues/7/comments", 502)
    publish(make_run("run14"), judge("run14", []), settings, client)
    assert len(standin.comments_on("octo", "shop", 7)) == 1
    # looked for an existing comment again before the second POST
    methods = [r.method for r in standin.requests if "/issues/" in r.path]
    assert methods == ["GET", "POST", "GET", "POST"]


def test_deleted_check_run_is_recreated(client: GitHubClient, settings: Settings,
                                        standin: GitHubStandIn) -> None:
    run = make_run("run15")
    old = checks.create_queued(client, run, settings)
    del standin.check_runs[old]
    publish(run, judge("run15", []), settings, client)
    assert run.check_run_id != old and cr_of(standin, run)["conclusion"] == "success"


def test_verdict_report_url_wins(client: GitHubClient, settings: Settings,
                                 standin: GitHubStandIn) -> None:
    run = make_run("run16")
    v = Verdict(run_id="run16", status="pass", summary="no findings",
                report_url="https://reports.example.com/run16/")
    publish(run, v, settings, client)
    assert cr_of(standin, run)["details_url"] == "https://reports.example.com/run16/"
