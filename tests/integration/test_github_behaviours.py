"""What GitHub documents and a well-behaved stand-in must exercise (issue 16): redirects
followed verbatim, secondary rate limits backed off exponentially and held for the whole
process, annotation limits in bytes and characters, paginated check-run lookups, only the
app's own PR comment adopted, and a client ID as the JWT's issuer. Real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from diffie.config import Settings
from diffie.errors import GitHubError, GitHubUnavailable
from diffie.github import checks
from diffie.github.client import GitHubClient
from diffie.github.comments import MARKER, upsert_comment
from diffie.github.publish import publish
from diffie.github.webhook_events import CheckRunEvent, decide
from diffie.models import Change, Run
from diffie.verdict import Finding, judge
from tests.github_standin import GitHubStandIn, app_settings, make_rsa_key

pytestmark = pytest.mark.integration

PRIVATE, PUBLIC = make_rsa_key()
HEAD, BASE = "1" * 40, "b" * 40


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


class FakeTime:
    """A clock that the client's sleeps move forward (no real waiting)."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds))
        self.now += seconds


def make_run(run_id: str, number: int = 7) -> Run:
    change = Change(id=f"c-{run_id}", mode="github", installation_id=11, gh_owner="octo",
                    gh_repo="shop", pr_number=number, base_rev=BASE, head_rev=HEAD,
                    repo="https://github.com/octo/shop.git")
    return Run(id=run_id, change=change, status="done", approved=False, published=False)


def console_error(message: str = "TypeError: x is undefined", flow: str = "cart",
                  **details: object) -> Finding:
    return Finding.model_validate({"kind": "console_error", "flow": flow, "viewport": "desktop",
                                   "step": 1, "message": message, "details": details})


# -- redirects --------------------------------------------------------------------------------

def test_a_307_on_the_completing_patch_is_followed(client: GitHubClient, settings: Settings,
                                                   standin: GitHubStandIn) -> None:
    run = make_run("run1")
    checks.create_queued(client, run, settings)
    standin.redirect_next("PATCH", r"/repos/octo/shop/check-runs/\d+", 307)
    publish(run, judge("run1", [console_error()]), settings, client)
    cr = standin.check_runs[run.check_run_id or 0]
    assert (cr["status"], cr["conclusion"]) == ("completed", "failure")
    patches = standin.calls("PATCH", r"/repos/octo/shop/check-runs/\d+")
    assert [p.status for p in patches][:2] == [307, 200]
    assert patches[1].query.get("redirected") == ["1"] and patches[1].body == patches[0].body


def test_a_307_on_create_is_followed(client: GitHubClient, settings: Settings,
                                     standin: GitHubStandIn) -> None:
    standin.redirect_next("POST", r"/repos/octo/shop/check-runs", 307)
    run = make_run("run2")
    check_id = checks.create_queued(client, run, settings)
    assert standin.check_runs[check_id]["external_id"] == "run2"
    assert [c.status for c in standin.calls("POST", r"/repos/octo/shop/check-runs")] == [307, 201]


def test_a_301_is_followed_and_a_redirect_to_another_host_is_refused(
        client: GitHubClient, standin: GitHubStandIn) -> None:
    standin.redirect_next("GET", r"/repos/octo/shop/check-runs/\d+", 301)
    created = client.post("/repos/octo/shop/check-runs", installation_id=11,
                          json={"name": "Diffie", "head_sha": HEAD, "status": "queued"})
    got = client.get(f"/repos/octo/shop/check-runs/{created['id']}", installation_id=11)
    assert got["id"] == created["id"]
    standin.fail_next("GET", r"/repos/octo/shop/check-runs/\d+", 302,
                      headers={"Location": "https://elsewhere.example/steal"}, body={})
    with pytest.raises(GitHubError, match="refusing to send credentials to elsewhere.example"):
        client.get(f"/repos/octo/shop/check-runs/{created['id']}", installation_id=11)


# -- rate limits ------------------------------------------------------------------------------

SECONDARY = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes "
                        "before you try again."}


def test_secondary_rate_limits_back_off_exponentially(settings: Settings,
                                                      standin: GitHubStandIn) -> None:
    t = FakeTime()
    with GitHubClient.from_settings(settings, sleep=t.sleep, clock=t.clock,
                                    max_rate_limit_wait_s=600) as c:
        standin.fail_next("POST", r"/repos/octo/shop/check-runs", 403, body=SECONDARY, times=2)
        c.post("/repos/octo/shop/check-runs", installation_id=11,
               json={"name": "Diffie", "head_sha": HEAD, "status": "queued"})
        assert t.sleeps == [60, 120]        # no header: one minute, then doubling
        standin.fail_next("POST", r"/repos/octo/shop/check-runs", 403, body=SECONDARY)
        c.post("/repos/octo/shop/check-runs", installation_id=11,
               json={"name": "Diffie", "head_sha": HEAD, "status": "queued"})
        assert t.sleeps == [60, 120, 60]    # a success in between starts again at a minute


def test_a_rate_limit_holds_every_request_of_the_process(settings: Settings,
                                                         standin: GitHubStandIn) -> None:
    t = FakeTime()
    with GitHubClient.from_settings(settings, sleep=t.sleep, clock=t.clock) as c:
        standin.fail_next("POST", r"/repos/octo/shop/check-runs", 403, body=SECONDARY,
                          headers={"x-ratelimit-remaining": "0",
                                   "x-ratelimit-reset": str(int(t.now) + 1000)})
        with pytest.raises(GitHubUnavailable) as first:
            c.post("/repos/octo/shop/check-runs", installation_id=11,
                   json={"name": "Diffie", "head_sha": HEAD, "status": "queued"})
        assert first.value.retry_after == pytest.approx(1001, abs=2)
        sent = len(standin.requests)
        with pytest.raises(GitHubUnavailable, match="not sent") as second:
            c.get("/repos/octo/shop/issues/7/comments", installation_id=11)
        assert len(standin.requests) == sent          # another request: not even sent
        assert second.value.retry_after == pytest.approx(1001, abs=2)
        t.now += 1002
        assert c.get("/repos/octo/shop/issues/7/comments", installation_id=11) == []


# -- limits and lookups -----------------------------------------------------------------------

def test_annotation_text_is_capped_in_bytes_and_titles_in_characters(
        client: GitHubClient, settings: Settings, standin: GitHubStandIn) -> None:
    run = make_run("run4")
    big = "é" * 40_000                       # 40,000 characters, 80,000 bytes
    finding = console_error(big, flow="f" * 400, path="static/app.js", line=3, stack=big)
    publish(run, judge("run4", [finding]), settings, client,
            repo_files=["static/app.js"])
    (ann,) = standin.check_runs[run.check_run_id or 0]["annotations"]
    assert 60_000 < len(ann["message"].encode()) <= 65_536
    assert 60_000 < len(ann["raw_details"].encode()) <= 65_536
    assert len(ann["title"]) == 255 and ann["title"].endswith("\u2026")


def test_the_check_run_lookup_reads_every_page(client: GitHubClient, settings: Settings,
                                               standin: GitHubStandIn) -> None:
    run = make_run("run5")
    checks.create_queued(client, run, settings)
    ours = run.check_run_id
    for i in range(130):                     # newer check runs on the same commit
        client.post("/repos/octo/shop/check-runs", installation_id=11,
                    json={"name": "Diffie", "head_sha": HEAD, "external_id": f"other-{i}"})
    run.check_run_id = None                  # as if the id had never been stored
    assert checks.create_queued(client, run, settings) == ours
    pages = standin.calls("GET", r"/repos/octo/shop/commits/1+/check-runs")
    assert [p.query.get("page", ["1"])[0] for p in pages[-2:]] == ["1", "2"]
    assert len(standin.check_runs) == 131    # found, not created twice


def test_only_the_apps_own_comment_is_adopted(client: GitHubClient,
                                              standin: GitHubStandIn) -> None:
    human = standin.add_comment("octo", "shop", 7, f"{MARKER}\ncopied by a person")
    other_app = standin.add_comment("octo", "shop", 7, f"{MARKER}\nanother app's",
                                    user_type="Bot", login="other[bot]",
                                    via_app={"id": 999, "slug": "other"})
    cid = upsert_comment(client, installation_id=11, owner="octo", repo="shop", number=7,
                         body="Diffie says hello")
    assert cid not in (human["id"], other_app["id"])
    assert upsert_comment(client, installation_id=11, owner="octo", repo="shop", number=7,
                          body="Diffie says it again") == cid
    bodies = {c["id"]: c["body"] for c in standin.comments_on("octo", "shop", 7)}
    assert bodies[human["id"]].endswith("copied by a person")
    assert bodies[other_app["id"]].endswith("another app's")
    assert bodies[cid].endswith("Diffie says it again") and len(bodies) == 3


# -- the app's identity ---------------------------------------------------------------------------

def test_a_client_id_works_as_the_jwt_issuer(tmp_path, standin: GitHubStandIn) -> None:
    settings = app_settings(tmp_path, standin, PRIVATE, github_app_id=standin.client_id)
    with GitHubClient.from_settings(settings) as c:
        created = c.post("/repos/octo/shop/check-runs", installation_id=11,
                         json={"name": "Diffie", "head_sha": HEAD, "status": "queued"})
        assert created["id"] and c.app_identity()["id"] == 4242
    (token_call,) = standin.calls("POST", r"/app/installations/11/access_tokens")
    assert token_call.status == 201 and token_call.auth == "jwt"
    # and a check run event names the app by client ID: ours, or another app's
    ev = CheckRunEvent(action="rerequested", installation_id=11, owner="octo", repo="shop",
                       check_run_id=1, name="Diffie", head_sha=HEAD, external_id="r1",
                       app_id=4242, app_client_id=standin.client_id)
    assert decide(ev, settings).kind.value != "ignore"
    other = CheckRunEvent(action="rerequested", installation_id=11, owner="octo", repo="shop",
                          check_run_id=1, name="Diffie", head_sha=HEAD, external_id="r1",
                          app_id=7, app_client_id="Iv1.someoneelse")
    assert decide(other, settings).kind.value == "ignore"
