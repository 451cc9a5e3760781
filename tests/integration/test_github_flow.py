"""The GitHub library end to end, as the webhook router and the worker will drive it: GitHub's
own webhook payloads (tests/fixtures/github, repository rewritten to a local one, signed),
a real HTTP stand-in for the REST API, the source fetched over git's smart HTTP with the
installation token. The VM verification itself is replaced by a tiny judge of the checkout."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from diffie.config import Settings
from diffie.github import checks
from diffie.github.client import GitHubClient
from diffie.github.comments import MARKER
from diffie.github.publish import publish, publish_cancelled
from diffie.github.repo_cache import SourceCache
from diffie.github.webhook_events import (
    Action,
    ActionKind,
    PullRequestEvent,
    decide,
    parse_event,
    verify_signature,
)
from diffie.models import Change, Run
from diffie.verdict import Finding, Verdict, judge
from tests.github_standin import (
    GitHubStandIn,
    GitSmartHTTP,
    app_settings,
    commit_files,
    git,
    make_rsa_key,
    publish_bare,
)

pytestmark = pytest.mark.integration

from tests.paths import FIXTURES as SHARED_FIXTURES  # noqa: E402

FIXTURES = SHARED_FIXTURES / "github"
FIX_HEAD = b"ec26c3e57ca3a959ca5aad62de7213c562f8c821"
FIX_BASE = b"f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
FIX_URL = b"https://github.com/Codertocat/Hello-World.git"
PRIVATE, PUBLIC = make_rsa_key()
OWNER, REPO = "Codertocat", "Hello-World"


@dataclass
class World:
    """GitHub (API + git), the repository, and what the router/worker keep in their DB."""

    standin: GitHubStandIn
    git_server: GitSmartHTTP
    settings: Settings
    client: GitHubClient
    cache: SourceCache
    work: Path
    tmp: Path
    runs: dict[str, Run] = field(default_factory=dict)

    @property
    def clone_url(self) -> str:
        return self.git_server.clone_url(OWNER, REPO)

    def delivery(self, name: str, *, head: str, base: str,
                 edit: dict[str, object] | None = None) -> tuple[str, bytes, str]:
        """A fixture rewritten to the local repository and signed: (event, body, signature)."""
        body = (FIXTURES / f"{name}.json").read_bytes()
        body = body.replace(FIX_HEAD, head.encode()).replace(FIX_BASE, base.encode())
        body = body.replace(FIX_URL, self.clone_url.encode())
        if edit:
            data = json.loads(body)
            for dotted, value in edit.items():
                *path, last = dotted.split(".")
                cur = data
                for p in path:
                    cur = cur[p]
                cur[last] = value
            body = json.dumps(data).encode()
        sig = "sha256=" + hmac.new(self.settings.github_webhook_secret.encode(), body,
                                   hashlib.sha256).hexdigest()
        return name.split(".")[0], body, sig

    # -- what the webhook router does --------------------------------------------------------

    def receive(self, event: str, body: bytes, signature: str) -> tuple[Action, Run | None]:
        assert verify_signature(self.settings.github_webhook_secret, body, signature)
        action = decide(parse_event(event, body), self.settings)
        if action.kind in (ActionKind.ENQUEUE, ActionKind.CANCEL_PR_RUNS) or \
                (action.kind == ActionKind.RERUN and action.run_id is None):
            for old in self.open_runs(action):
                old.status = "cancelled"
                publish_cancelled(old, self.settings, self.client,
                                  reason=f"Superseded: {action.reason}.")
        run: Run | None = None
        if action.kind == ActionKind.ENQUEUE:
            pr = action.pull_request
            assert pr is not None
            run = self.new_run(Change(
                id=f"c{len(self.runs)}", mode="github", installation_id=pr.installation_id,
                gh_owner=pr.owner, gh_repo=pr.repo, pr_number=pr.number, base_rev=pr.base_sha,
                head_rev=pr.head_sha, repo=pr.base_clone_url,
                head_repo_url=pr.head_clone_url if pr.is_fork else None, title=pr.title))
        elif action.kind == ActionKind.RERUN:
            prior = [r for r in self.runs.values() if r.change.head_rev == action.head_sha
                     and r.change.gh_repo == action.repo]
            if prior:
                run = self.new_run(prior[-1].change)
        elif action.kind == ActionKind.APPROVE:
            run = self.runs[action.run_id] if action.run_id else None
            assert run is not None
            run.approved = True                  # what the plugin does: record, republish
            publish(run, Verdict.model_validate(run.verdict), self.settings, self.client)
        return action, run

    def open_runs(self, action: Action) -> list[Run]:
        return [r for r in self.runs.values()
                if r.status in ("queued", "running") and r.change.gh_owner == action.owner
                and r.change.gh_repo == action.repo and r.change.pr_number == action.pr_number]

    def new_run(self, change: Change) -> Run:
        run = Run(id=f"run{len(self.runs) + 1}", change=change, status="queued",
                  approved=False, published=False)
        self.runs[run.id] = run
        checks.create_queued(self.client, run, self.settings)
        return run

    # -- what the worker does ------------------------------------------------------------------

    def verify(self, run: Run) -> Verdict:
        ch = run.change
        run.status = "running"
        checks.mark_in_progress(self.client, run, self.settings)
        assert ch.installation_id is not None and ch.gh_owner and ch.gh_repo and ch.repo
        assert ch.base_rev and ch.head_rev
        token = self.client.installation_token(ch.installation_id)
        self.cache.fetch_pull_request(owner=ch.gh_owner, repo=ch.gh_repo, base_url=ch.repo,
                                      base_sha=ch.base_rev, head_url=ch.head_repo_url,
                                      head_sha=ch.head_rev, token=token,
                                      pr_number=ch.pr_number)
        head = self.cache.checkout(ch.gh_owner, ch.gh_repo, ch.head_rev, self.tmp / run.id / "h")
        base = self.cache.checkout(ch.gh_owner, ch.gh_repo, ch.base_rev, self.tmp / run.id / "b")
        findings = []
        for i, line in enumerate((head / "app.js").read_text().splitlines(), start=1):
            if "throw" in line:
                findings.append(Finding(kind="page_error", flow="home", viewport="desktop",
                                        message=f"Uncaught Error: {line.strip()}",
                                        details={"source_url": "http://10.0.0.5/app.js",
                                                 "line": i}))
        if (head / "style.css").read_text() != (base / "style.css").read_text():
            findings.append(Finding(kind="visual_change", flow="home", viewport="desktop",
                                    message="header moved", evidence=["diff-home.png"]))
        verdict = judge(run.id, findings, flows=1, viewports=1)
        run.verdict = verdict.model_dump(mode="json")
        publish(run, verdict, self.settings, self.client,
                repo_files=self.cache.list_files(ch.gh_owner, ch.gh_repo, ch.head_rev))
        run.status = "done"
        return verdict

    def check_run(self, run: Run) -> dict[str, Any]:
        assert run.check_run_id is not None
        return self.standin.check_runs[run.check_run_id]

    def our_comments(self) -> list[dict[str, Any]]:
        return [c for c in self.standin.comments_on(OWNER, REPO, 2)
                if c["body"].startswith(MARKER)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "master")
    commit_files(work, {"app.js": "render();\n", "style.css": "h1 { margin: 0 }\n"}, "base")
    root = tmp_path / "srv"
    publish_bare(work, root, OWNER, REPO)
    with GitHubStandIn(app_id="29310", public_key_pem=PUBLIC) as standin, \
            GitSmartHTTP(root, standin.is_valid_token) as git_server:
        settings = app_settings(tmp_path, standin, PRIVATE)
        with GitHubClient.from_settings(settings, backoff_s=0.02) as client:
            yield World(standin, git_server, settings, client,
                        SourceCache.from_settings(settings), work, tmp_path)
        assert standin.violations == [], standin.violations


def push(world: World, files: dict[str, str], message: str, branch: str = "changes",
         owner: str = OWNER) -> str:
    git(world.work, "checkout", "-q", "-B", branch)
    sha = commit_files(world.work, files, message)
    publish_bare(world.work, world.git_server.root, owner, REPO)
    git(world.work, "checkout", "-q", "master")
    return sha


def test_pull_request_to_check_run_and_comment(world: World) -> None:
    base = git(world.work, "rev-parse", "master")
    head1 = push(world, {"app.js": "render();\nthrow new Error('cart');\n"}, "break the cart")
    _, run1 = world.receive(*world.delivery("pull_request.opened", head=head1, base=base))
    assert run1 is not None and world.check_run(run1)["status"] == "queued"
    world.verify(run1)
    cr1 = world.check_run(run1)
    assert (cr1["head_sha"], cr1["conclusion"]) == (head1, "failure")
    assert cr1["annotations"] == [{
        "path": "app.js", "start_line": 2, "end_line": 2, "annotation_level": "failure",
        "message": "Uncaught Error: throw new Error('cart');",
        "title": "page_error in home / desktop"}]
    (comment,) = world.our_comments()
    assert "Diffie: fail" in comment["body"]
    comment_id = comment["id"]

    # a second push supersedes: its run is verified; the comment is updated, not duplicated
    head2 = push(world, {"app.js": "render();\n", "style.css": "h1 { margin: 4px }\n"},
                 "fix the cart, move the header")
    _, run2 = world.receive(*world.delivery("pull_request.synchronize", head=head2, base=base))
    assert run2 is not None
    # a third push arrives while run2 is still queued: run2 is cancelled
    head3 = push(world, {"style.css": "h1 { margin: 2px }\n"}, "smaller move")
    action, run3 = world.receive(*world.delivery("pull_request.synchronize", head=head3,
                                                 base=base))
    assert action.supersede and run3 is not None
    assert run2.status == "cancelled" and world.check_run(run2)["conclusion"] == "cancelled"
    world.verify(run3)
    cr3 = world.check_run(run3)
    assert cr3["conclusion"] == "action_required"
    assert cr3["actions"][0]["identifier"] == "approve"
    (comment,) = world.our_comments()
    assert comment["id"] == comment_id and "Diffie: changed" in comment["body"]

    # the "Approve changes" button
    action, approved = world.receive(*world.delivery(
        "check_run.requested_action", head=head3, base=base,
        edit={"requested_action.identifier": "approve", "check_run.external_id": run3.id,
              "check_run.id": run3.check_run_id, "check_run.app.id": 29310,
              "repository.name": REPO, "repository.owner.login": OWNER}))
    assert action.kind == ActionKind.APPROVE and approved is run3
    assert world.check_run(run3)["conclusion"] == "success"
    assert world.check_run(run3)["actions"] == []
    assert len(world.our_comments()) == 1

    # "Re-run all checks": a new run of the same change
    action, rerun = world.receive(*world.delivery("check_suite.rerequested", head=head3,
                                                  base=base))
    assert action.kind == ActionKind.RERUN and rerun is not None and rerun.change is run3.change
    world.verify(rerun)
    assert world.check_run(rerun)["conclusion"] == "action_required"   # not approved yet
    assert len(world.our_comments()) == 1

    # closing the pull request cancels what is still queued
    head4 = push(world, {"app.js": "render(); // 4\n"}, "one more")
    _, run4 = world.receive(*world.delivery("pull_request.synchronize", head=head4, base=base))
    action, _ = world.receive(*world.delivery("pull_request.closed", head=head4, base=base))
    assert action.kind == ActionKind.CANCEL_PR_RUNS
    assert run4 is not None and world.check_run(run4)["conclusion"] == "cancelled"
    # the token was fetched once and reused for the API and for git
    assert len(world.standin.calls("POST", r"/app/installations/1/access_tokens")) == 1


def test_fork_pull_request(world: World) -> None:
    base = git(world.work, "rev-parse", "master")
    head = push(world, {"style.css": "h1 { color: red }\n"}, "fork change", branch="fork",
                owner="forker")
    fork_url = world.git_server.clone_url("forker", REPO)
    event, body, sig = world.delivery(
        "pull_request.opened", head=head, base=base,
        edit={"pull_request.head.repo.full_name": f"forker/{REPO}",
              "pull_request.head.repo.clone_url": fork_url})
    action, run = world.receive(event, body, sig)
    assert action.pull_request is not None and action.pull_request.is_fork
    assert isinstance(action.pull_request, PullRequestEvent)
    assert run is not None and run.change.head_repo_url == fork_url
    world.verify(run)
    assert world.check_run(run)["conclusion"] == "action_required"
    paths = {r.path.split(".git")[0] for r in world.git_server.requests}
    assert paths == {f"/{OWNER}/{REPO}", f"/forker/{REPO}"}
    # the check run and the comment are on the base repository
    assert world.check_run(run)["owner"] == OWNER and len(world.our_comments()) == 1


def test_drafts_are_skipped(world: World) -> None:
    base = git(world.work, "rev-parse", "master")
    head = push(world, {"app.js": "x();\n"}, "draft")
    action, run = world.receive(*world.delivery("pull_request.opened", head=head, base=base,
                                                edit={"pull_request.draft": True}))
    assert action.kind == ActionKind.IGNORE and run is None
    assert world.standin.check_runs == {}
    action, run = world.receive(*world.delivery("pull_request.ready_for_review", head=head,
                                                base=base))
    assert action.kind == ActionKind.ENQUEUE and run is not None
