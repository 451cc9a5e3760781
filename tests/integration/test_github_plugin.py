"""The GitHub plugin in a real app context (SQLite database, migrations) against the GitHub
stand-in and git's smart HTTP: the run lifecycle events drive the check run and the comment,
the source provider fetches the pull request with the installation token, and results that
could not be published while GitHub was down are published by the sweep."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from diffie import publishing, run_store
from diffie.app_context import AppContext
from diffie.composition import job_deps, queue_app
from diffie.config import Settings
from diffie.db import Database
from diffie.github import pull_requests
from diffie.github.comments import MARKER
from diffie.github.plugin import GitHubPublisher, GitHubSource, install
from diffie.github.webhook_events import Action, ActionKind, PullRequestEvent, decide, parse_event
from diffie.migrations import upgrade
from diffie.models import Lease, Run
from diffie.verdict import Finding, judge
from tests.github_standin import (
    GitHubStandIn,
    GitSmartHTTP,
    app_settings,
    commit_files,
    git,
    make_rsa_key,
    publish_bare,
)
from workers.embedded import EmbeddedWorkers

pytestmark = pytest.mark.integration

from tests.paths import FIXTURES as SHARED_FIXTURES  # noqa: E402

FIXTURES = SHARED_FIXTURES / "github"
PRIVATE, PUBLIC = make_rsa_key()
OWNER, REPO = "Codertocat", "Hello-World"


@dataclass
class Env:
    ctx: AppContext
    publisher: GitHubPublisher
    standin: GitHubStandIn
    git_server: GitSmartHTTP
    base: str
    head: str


def make_ctx(settings: Settings) -> AppContext:
    settings.ensure_dirs()
    db = Database(settings.resolved_database_url())
    upgrade(db.engine)
    return AppContext(settings=settings, db=db, deps=job_deps(settings, db),
                      celery_factory=queue_app)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "master")
    base = commit_files(work, {"app.js": "render();\n"}, "base")
    git(work, "checkout", "-q", "-b", "changes")
    head = commit_files(work, {"app.js": "render();\nthrow new Error('x');\n"}, "head")
    publish_bare(work, tmp_path / "srv", OWNER, REPO)
    with GitHubStandIn(app_id="29310", public_key_pem=PUBLIC) as standin, \
            GitSmartHTTP(tmp_path / "srv", standin.is_valid_token) as git_server:
        ctx = make_ctx(app_settings(tmp_path, standin, PRIVATE, heartbeat_s=0.2,
                                    github_sweep_interval_s=0.5))
        publisher = install(ctx)
        assert publisher is not None
        publishing.publish_inline(ctx)              # the queue's own tests are below
        publisher.client.backoff_s = 0.01           # GitHub outages: retry fast in tests
        yield Env(ctx, publisher, standin, git_server, base, head)
        ctx.close()
        assert standin.violations == [], standin.violations


def record_pr(env: Env, head: str | None = None) -> str:
    """What the webhook router does with pull_request.opened (repository rewritten)."""
    body = (FIXTURES / "pull_request.opened.json").read_text()
    body = body.replace("ec26c3e57ca3a959ca5aad62de7213c562f8c821", head or env.head)
    body = body.replace("f95f852bd8fca8fcc58a9a2d6c842781e32a215e", env.base)
    body = body.replace("https://github.com/Codertocat/Hello-World.git",
                        env.git_server.clone_url(OWNER, REPO))
    action = decide(parse_event("pull_request", json.loads(body)), env.ctx.settings)
    assert isinstance(action.pull_request, PullRequestEvent)
    with env.ctx.db.session() as s:
        run_id, _ = pull_requests.record_pull_request(s, action.pull_request, supersede=True)
    return run_id


def row(env: Env, run_id: str) -> Run:
    with env.ctx.db.session() as s:
        run = s.get(Run, run_id)
        assert run is not None
        s.expunge(run)
        return run


def finish(env: Env, run_id: str, findings: list[Finding]) -> None:
    """What the worker does: claim, verify (here: a given verdict), record, emit finished."""
    assert run_store.claim(env.ctx.db, run_id, "w1", stale_after_s=60, max_attempts=3) == "claimed"
    env.ctx.events.started(run_id)
    assert run_store.record_verdict(env.ctx.db, run_id, "w1", judge(run_id, findings), None)
    env.ctx.events.finished(run_id)


def test_not_configured_is_a_no_op(tmp_path: Path) -> None:
    ctx = make_ctx(Settings(data_dir=tmp_path / "d", github_app_id="",
                            github_private_key_path=None))
    assert install(ctx) is None and "github" not in ctx.sources
    ctx.db.dispose()


def test_events_drive_the_check_run_and_comment(env: Env) -> None:
    assert isinstance(env.ctx.sources["github"], GitHubSource)
    run_id = record_pr(env)
    env.ctx.events.queued(run_id)
    (cr,) = env.standin.check_runs.values()
    assert (cr["status"], cr["external_id"], cr["head_sha"]) == ("queued", run_id, env.head)
    assert row(env, run_id).check_run_id == cr["id"]

    finish(env, run_id, [Finding(kind="visual_change", flow="home", viewport="desktop",
                                 message="moved", evidence=["diff-home.png"])])
    assert cr["status"] == "completed" and cr["conclusion"] == "action_required"
    assert [h.get("status") for h in cr["history"]][:2] == ["queued", "in_progress"]
    assert row(env, run_id).published is True
    (comment,) = env.standin.comments_on(OWNER, REPO, 2)
    assert comment["body"].startswith(MARKER)

    with env.ctx.db.session() as s:                 # the "Approve changes" button
        action = Action(ActionKind.APPROVE, "approve", owner=OWNER, repo=REPO, run_id=run_id)
        assert pull_requests.approve(s, action) == run_id
    env.ctx.events.approved(run_id)
    assert cr["conclusion"] == "success" and cr["actions"] == []
    assert len(env.standin.comments_on(OWNER, REPO, 2)) == 1


def test_superseded_run_is_cancelled_on_github(env: Env) -> None:
    first = record_pr(env)
    env.ctx.events.queued(first)
    with env.ctx.db.session() as s:
        cancelled = run_store.cancel_runs(s, [first], "superseded by a newer push (abc)")
    assert cancelled == [first]
    env.ctx.events.finished(first)
    (cr,) = env.standin.check_runs.values()
    assert cr["conclusion"] == "cancelled"
    assert cr["output"]["summary"] == "Superseded by a newer push (abc)"
    assert row(env, first).published is True


def test_source_provider_fetches_with_the_installation_token(env: Env, tmp_path: Path) -> None:
    run_id = record_pr(env)
    change = run_store.change_input(env.ctx.db, run_id)
    source = env.ctx.sources["github"]
    shas = source.materialise(change, tmp_path / "b", tmp_path / "h")
    assert shas == (env.base, env.head)
    assert "throw" in (tmp_path / "h" / "app.js").read_text()
    assert "throw" not in (tmp_path / "b" / "app.js").read_text()
    assert env.git_server.requests and all(r.authorized for r in env.git_server.requests)
    # annotations can now map findings to files of the head commit
    finish(env, run_id, [Finding(kind="page_error", flow="home", viewport="desktop",
                                 message="Uncaught Error: x",
                                 details={"source_url": "http://vm/app.js", "line": 2})])
    (cr,) = env.standin.check_runs.values()
    assert [(a["path"], a["start_line"]) for a in cr["annotations"]] == [("app.js", 2)]


def sweep_now(env: Env) -> list[str]:
    """One sweep of the deployment, whatever the interval's lease says, published inline."""
    with env.ctx.db.session() as s:
        s.query(Lease).delete()
    queued = publishing.sweep(env.ctx, "test", interval_s=60, min_age_s=0)
    return [run_id for _, run_id, _ in queued]


def test_outage_then_sweep_publishes(env: Env) -> None:
    run_id = record_pr(env)
    env.standin.outage = True
    finish(env, run_id, [])                 # GitHub unreachable: nothing published yet
    assert row(env, run_id).published is False
    assert env.standin.check_runs == {}
    assert env.publisher.pending(min_age_s=3600) == []     # too recent: its own job may run
    env.standin.outage = False
    assert sweep_now(env) == [run_id]
    (cr,) = env.standin.check_runs.values()
    assert cr["conclusion"] == "success" and row(env, run_id).published is True
    assert env.publisher.pending(min_age_s=0) == []        # nothing left
    # once per interval in the whole deployment: a second process in the same interval skips
    assert publishing.sweep(env.ctx, "other", interval_s=60, min_age_s=0) == []


def test_the_queue_retries_a_rate_limited_publish_after_retry_after(env: Env) -> None:
    """Through the real queue (SQLite broker, a worker for the publish queue): a secondary
    rate limit with ``retry-after: 1`` puts the job back, and it lands a second later."""
    env.ctx.publish_fn = None
    run_id = record_pr(env)
    env.standin.fail_next("GET", r"/repos/.*/check-runs", 403, headers={"retry-after": "1"})
    with EmbeddedWorkers(env.ctx.celery, publish=True):
        env.ctx.events.queued(run_id)
        deadline = time.monotonic() + 30
        while not env.standin.check_runs and time.monotonic() < deadline:
            time.sleep(0.1)
    (cr,) = env.standin.check_runs.values()
    assert cr["status"] == "queued" and cr["external_id"] == run_id


def test_the_workers_periodic_sweep_publishes_after_an_outage(env: Env) -> None:
    """A long-lived deployment heals without a restart: a worker's supervisor sweeps every
    interval (``DIFFIE_GITHUB_SWEEP_INTERVAL_S``)."""
    run_id = record_pr(env)
    env.standin.outage = True
    finish(env, run_id, [])                # the finishing publish fails: nothing published
    assert row(env, run_id).published is False
    env.ctx.publish_fn = None
    with EmbeddedWorkers(env.ctx.celery, publish=True):
        time.sleep(1.0)                    # sweeps during the outage fail, and are retried
        env.standin.outage = False
        deadline = time.monotonic() + 30
        while not row(env, run_id).published and time.monotonic() < deadline:
            time.sleep(0.1)
    (cr,) = env.standin.check_runs.values()
    assert cr["conclusion"] == "success" and row(env, run_id).published is True


def test_two_publishers_of_one_pull_request_take_turns(env: Env) -> None:
    """The pull request's lease: while one process publishes to a PR, another is told Busy
    (its job is retried), so two comment upserts never race into two comments."""
    from diffie import leases
    from diffie.errors import Busy

    run_id = record_pr(env)
    assert leases.take(env.ctx.db, f"github:{OWNER}/{REPO}#2", "someone-else", 60)
    with pytest.raises(Busy):
        env.publisher.publish(run_id, "queued")
    leases.release(env.ctx.db, f"github:{OWNER}/{REPO}#2", "someone-else")
    assert env.publisher.publish(run_id, "queued") == "check run queued"


def test_approval_during_an_outage_is_published_by_the_sweep(env: Env) -> None:
    run_id = record_pr(env)
    env.ctx.events.queued(run_id)
    finish(env, run_id, [Finding(kind="visual_change", flow="home", viewport="desktop",
                                 message="moved", evidence=["diff-home.png"])])
    (cr,) = env.standin.check_runs.values()
    assert cr["conclusion"] == "action_required"
    with env.ctx.db.session() as s:
        action = Action(ActionKind.APPROVE, "approve", owner=OWNER, repo=REPO, run_id=run_id)
        assert pull_requests.approve(s, action) == run_id
    env.standin.outage = True
    env.ctx.events.approved(run_id)       # GitHub unreachable: the approval waits ...
    assert cr["conclusion"] == "action_required" and row(env, run_id).published is False
    env.standin.outage = False
    assert sweep_now(env) == [run_id]          # ... for the sweep
    assert cr["conclusion"] == "success" and row(env, run_id).published is True
