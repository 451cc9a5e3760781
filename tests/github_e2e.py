"""The GitHub App end to end, for the integration and the system test of the same flow.

:class:`Hub` puts every piece on loopback: the shop (``examples/shop``) as a bare repository
served by git's smart HTTP (token auth), the GitHub REST stand-in (installation tokens, check
runs, comments), the API under uvicorn with the GitHub plugin installed, and an embedded
worker. Webhooks are GitHub's own payloads (``tests/fixtures/github``, read in
place) with the repository, installation, pull request and SHAs rewritten to the local repo,
signed with the webhook secret and posted over HTTP.

Which sandbox verifies the runs is the caller's choice: the real libvirt one (system test,
default job deps) or a stand-in (integration test: ``with_deps``).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from diffie.app_context import AppContext
from diffie.composition import build_context
from diffie.config import Settings
from diffie.github.comments import MARKER
from diffie.models import Run
from examples.corpus import CHANGES_DIR, SHOP_DIR, materialize_repo
from tests.conftest import LiveServer, wait_until
from tests.github_standin import GitHubStandIn, GitSmartHTTP, git, make_rsa_key, publish_bare
from tests.paths import FIXTURES as _SHARED
from workers.embedded import EmbeddedWorkers

FIXTURES = _SHARED / "github"
OWNER, REPO = "acme", "shop"
APP_ID = "29310"
INSTALLATION = 4242
PR_NUMBER = 2
SECRET = "e2e-webhook-secret"
PUBLIC_URL = "https://diffie.example.com"
PRIVATE, PUBLIC = make_rsa_key()

SettingsFactory = Callable[[dict[str, Any]], Settings]
MAINTAINER = "maintainer-mo"            # has write access to OWNER/REPO in every hub
_CLOCK = itertools.count()


def github_now() -> str:
    """GitHub's ``updated_at`` of a delivery sent now: strictly later than the last one (Diffie
    orders a pull request's deliveries by it)."""
    stamp = datetime.now(UTC) + timedelta(seconds=next(_CLOCK))
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


class ShopRepo:
    """The shop as a pull request: base commit, then one commit per pushed corpus change."""

    def __init__(self, root: Path, srv: Path, first_change: str) -> None:
        self.work = root / "shop"
        self.srv = srv
        self.base, self.head = materialize_repo(SHOP_DIR, CHANGES_DIR / f"{first_change}.patch",
                                                self.work)
        git(self.work, "branch", "-q", "base", self.base)
        publish_bare(self.work, srv, OWNER, REPO)

    def push(self, change: str, *, owner: str = OWNER) -> str:
        """Apply a corpus change on top of the current head, commit, publish; the new SHA."""
        git(self.work, "apply", "--index", "--whitespace=nowarn",
            str(CHANGES_DIR / f"{change}.patch"))
        git(self.work, "commit", "-q", "--no-verify", "-m", f"head: {change}")
        self.head = git(self.work, "rev-parse", "HEAD")
        publish_bare(self.work, self.srv, owner, REPO)
        return self.head


@dataclass
class Hub:
    standin: GitHubStandIn
    git_server: GitSmartHTTP
    ctx: AppContext
    api: httpx.Client
    repo: ShopRepo

    # -- webhooks --------------------------------------------------------------------------

    def repo_json(self, owner: str = OWNER) -> dict[str, Any]:
        return {"name": REPO, "full_name": f"{owner}/{REPO}",
                "clone_url": self.git_server.clone_url(owner, REPO),
                "html_url": f"https://github.com/{owner}/{REPO}"}

    def payload(self, fixture: str, *, head: str, base: str | None = None,
                number: int = PR_NUMBER, head_owner: str = OWNER,
                edit: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """A fixture with its repository, installation, pull request and SHAs rewritten."""
        data: dict[str, Any] = json.loads((FIXTURES / f"{fixture}.json").read_bytes())
        base = base or self.repo.base
        data["repository"].update(self.repo_json())
        data["repository"]["owner"]["login"] = OWNER
        data["installation"]["id"] = INSTALLATION
        pr = data.get("pull_request")
        if pr is not None:
            data["number"] = pr["number"] = number
            pr["base"]["sha"], pr["head"]["sha"] = base, head
            pr["base"]["repo"].update(self.repo_json())
            pr["base"]["repo"]["owner"]["login"] = OWNER
            pr["head"]["repo"].update(self.repo_json(head_owner))
            pr["head"]["repo"]["owner"]["login"] = head_owner
            pr["head"]["label"] = f"{head_owner}:{pr['head']['ref']}"
            pr["updated_at"] = github_now()
        for key in ("check_run", "check_suite"):
            check = data.get(key)
            if check is not None:
                check["head_sha"] = head
                check["app"]["id"] = int(APP_ID)
                check["pull_requests"] = [{
                    "number": number, "url": "", "id": 1,
                    "head": {"sha": head, "ref": "changes", "repo": {"id": 1, "name": REPO}},
                    "base": {"sha": base, "ref": "main", "repo": {"id": 1, "name": REPO}}}]
        if edit is not None:
            edit(data)
        return data

    def send(self, event: str, data: dict[str, Any]) -> httpx.Response:
        """Sign and POST one delivery to ``/webhooks/github``."""
        body = json.dumps(data).encode()
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return self.api.post("/webhooks/github", content=body, headers={
            "Content-Type": "application/json", "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()), "X-GitHub-Hook-ID": "123",
            "X-Hub-Signature-256": f"sha256={signature}", "User-Agent": "GitHub-Hookshot/e2e"})

    def deliver(self, fixture: str, **kwargs: Any) -> dict[str, Any]:
        """Send a rewritten fixture; returns the API's answer (asserting 202)."""
        resp = self.send(fixture.split(".")[0], self.payload(fixture, **kwargs))
        assert resp.status_code == 202, resp.text
        answer: dict[str, Any] = resp.json()
        return answer

    def check_run_event(self, fixture: str, run_id: str, *, head: str,
                        identifier: str | None = None,
                        sender: str = MAINTAINER) -> dict[str, Any]:
        """``check_run.rerequested`` / ``requested_action`` on the run's check run, clicked by
        ``sender``."""
        check_id = self.check_run_id(run_id)

        def edit(data: dict[str, Any]) -> None:
            data["check_run"]["id"] = check_id
            data["check_run"]["external_id"] = run_id
            data["check_run"]["name"] = "Diffie"
            data["sender"]["login"] = sender
            if identifier is not None:
                data["requested_action"] = {"identifier": identifier}

        return self.deliver(fixture, head=head, edit=edit)

    # -- what happened -----------------------------------------------------------------------

    def run(self, run_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.api.get(f"/v1/runs/{run_id}").json()
        return data

    def wait_run(self, run_id: str, *, timeout: float,
                 statuses: tuple[str, ...] = ("done", "error")) -> dict[str, Any]:
        run: dict[str, Any] = wait_until(
            lambda: (r := self.run(run_id))["status"] in statuses and r,
            timeout=timeout, interval=0.5, what=f"run {run_id} to be {'/'.join(statuses)}")
        return run

    def run_row(self, run_id: str) -> Run:
        with self.ctx.db.session() as s:
            row = s.get(Run, run_id)
            assert row is not None
            s.expunge(row)
            return row

    def check_run_id(self, run_id: str, timeout: float = 60.0) -> int:
        cid: int = wait_until(lambda: self.run_row(run_id).check_run_id, timeout=timeout,
                              what=f"the check run of run {run_id}")
        return cid

    def check_run(self, run_id: str) -> dict[str, Any]:
        cr: dict[str, Any] = self.standin.check_runs[self.check_run_id(run_id)]
        return cr

    def wait_conclusion(self, run_id: str, conclusion: str, *, timeout: float) -> dict[str, Any]:
        cr: dict[str, Any] = wait_until(
            lambda: (c := self.check_run(run_id))["conclusion"] == conclusion and c,
            timeout=timeout, interval=0.3,
            what=f"run {run_id}'s check run to conclude {conclusion}")
        return cr

    def statuses(self, run_id: str) -> list[str]:
        """The check run's status after each request, with repeats dropped."""
        seen: list[str] = []
        for body in self.check_run(run_id)["history"]:
            status = "completed" if body.get("conclusion") else body.get("status")
            if status and (not seen or seen[-1] != status):
                seen.append(status)
        return seen

    def our_comments(self, number: int = PR_NUMBER) -> list[dict[str, Any]]:
        return [c for c in self.standin.comments_on(OWNER, REPO, number)
                if c["body"].startswith(MARKER)]

    def wait_comment(self, text: str, number: int = PR_NUMBER, *,
                     timeout: float = 60.0) -> dict[str, Any]:
        """Our (single) comment once it contains ``text``."""
        def ready() -> dict[str, Any] | None:
            comments = self.our_comments(number)
            assert len(comments) <= 1, f"duplicated comment: {comments}"
            return comments[0] if comments and text in comments[0]["body"] else None

        found: dict[str, Any] = wait_until(ready, timeout=timeout, interval=0.3,
                                           what=f"the PR comment saying {text!r}")
        return found


def github_overrides(tmp_path: Path, standin: GitHubStandIn) -> dict[str, Any]:
    key = tmp_path / "github-app.pem"
    key.write_bytes(PRIVATE)
    return {"github_app_id": standin.app_id, "github_private_key_path": key,
            "github_api_url": standin.url, "github_webhook_secret": SECRET,
            "public_url": PUBLIC_URL, "github_process_drafts": False,
            "github_sweep_interval_s": 2.0}


@contextmanager
def github_hub(tmp_path: Path, make_settings: SettingsFactory, *, first_change: str,
               configure: Callable[[AppContext], None] | None = None) -> Iterator[Hub]:
    """Everything up: GitHub stand-in, git server, API (uvicorn), worker. ``make_settings``
    receives the GitHub settings to merge; ``configure`` adjusts the context (sandbox)."""
    srv = tmp_path / "srv"
    repo = ShopRepo(tmp_path, srv, first_change)
    with ExitStack() as stack:
        standin = stack.enter_context(GitHubStandIn(app_id=APP_ID, public_key_pem=PUBLIC))
        standin.grant(OWNER, REPO, MAINTAINER, "write")
        git_server = stack.enter_context(GitSmartHTTP(srv, standin.is_valid_token))
        ctx = build_context(make_settings(github_overrides(tmp_path, standin)))
        stack.callback(ctx.close)
        assert "github" in ctx.sources, "the GitHub plugin did not install"
        if configure is not None:
            configure(ctx)
        from diffie.api import create_app

        server = stack.enter_context(LiveServer(create_app(context=ctx)))
        stack.enter_context(EmbeddedWorkers(ctx.celery, publish=True))
        api = stack.enter_context(httpx.Client(base_url=server.url, timeout=30))
        hub = Hub(standin, git_server, ctx, api, repo)
        yield hub
        assert standin.violations == [], standin.violations
        tokens = standin.issued_tokens()
        logs = "\n".join(str(r.__dict__) for r in git_server.requests)
        assert not any(t in logs for t in tokens)


def main_flow(hub: Hub, *, run_timeout: float) -> tuple[str, str]:
    """The issue's "Done when": a pull request opened with a visual-only change ends
    ``action_required`` (Approve button) and gets a comment; a second push with a regression
    ends ``failure`` and the same comment is updated. Returns (first run, second run)."""
    start = time.monotonic()
    opened = hub.deliver("pull_request.opened", head=hub.repo.head)
    assert opened["status"] == "queued", opened
    run1 = opened["run_id"]
    cr = hub.wait_conclusion(run1, "action_required", timeout=run_timeout)
    print(f"[e2e] first run published after {time.monotonic() - start:.0f} s")
    assert hub.statuses(run1) == ["queued", "in_progress", "completed"]
    assert cr["head_sha"] == hub.repo.head and cr["owner"] == OWNER and cr["name"] == "Diffie"
    details = cr["details_url"]                  # signed: opens without an API token
    assert details.startswith(f"{PUBLIC_URL}/v1/runs/{run1}/signed/") and \
        details.endswith("/report/"), details
    api_base = str(hub.api.base_url).rstrip("/")
    page = httpx.get(api_base + details.removeprefix(PUBLIC_URL), timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert [a["identifier"] for a in cr["actions"]] == ["approve"]
    assert hub.run(run1)["verdict"]["status"] == "changed"
    assert any(f["kind"] == "visual_change" for f in hub.run(run1)["verdict"]["findings"])
    comment = hub.wait_comment("changed")
    assert f"/v1/runs/{run1}/signed/" in comment["body"]
    # the comment is upserted before the run row records "published" (one commit after it)
    wait_until(lambda: hub.run_row(run1).published, timeout=30, what="run 1 marked published")

    # the second push: a regression on top; the comment is updated in place
    start = time.monotonic()
    head2 = hub.repo.push("page-error-home")
    sync = hub.deliver("pull_request.synchronize", head=head2)
    assert sync["status"] == "queued" and sync["superseded"] == [], sync
    run2 = sync["run_id"]
    cr2 = hub.wait_conclusion(run2, "failure", timeout=run_timeout)
    print(f"[e2e] second run published after {time.monotonic() - start:.0f} s")
    assert hub.statuses(run2) == ["queued", "in_progress", "completed"]
    assert cr2["head_sha"] == head2 and cr2["actions"] == []
    verdict = hub.run(run2)["verdict"]
    assert verdict["status"] == "fail"
    assert any(f["kind"] == "page_error" for f in verdict["findings"])
    updated = hub.wait_comment("fail")
    assert updated["id"] == comment["id"] and f"/v1/runs/{run2}/signed/" in updated["body"]
    assert len(hub.standin.calls("POST", rf"/repos/{OWNER}/{REPO}/issues/{PR_NUMBER}/comments")) == 1
    assert hub.standin.calls("PATCH", rf"/repos/{OWNER}/{REPO}/issues/comments/{comment['id']}")
    # one installation token served the API and both clones
    assert len(hub.standin.calls("POST", rf"/app/installations/{INSTALLATION}/access_tokens")) == 1
    git_paths = {r.path.split(".git")[0] for r in hub.git_server.requests}
    assert git_paths == {f"/{OWNER}/{REPO}"}
    return run1, run2
