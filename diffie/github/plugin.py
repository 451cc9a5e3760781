"""Diffie's GitHub App, plugged into a process: ``install(ctx)`` (called by
``diffie.composition.build_context``) when the app is configured
(``DIFFIE_GITHUB_APP_ID`` and ``DIFFIE_GITHUB_PRIVATE_KEY_PATH``):

- ``ctx.sources["github"]``: :class:`GitHubSource` fetches a pull request's base and head with
  the installation token (forks included) from the cache of bare repositories;
- ``ctx.publishers["github"]`` and ``ctx.events``: :class:`GitHubPublisher` keeps the check
  run and the PR comment in step with the run — ``waiting`` completes it ``action_required``
  with "Authorize run", ``queued`` creates the check run, ``started`` marks it in progress,
  ``finished`` completes it (or cancels it) and updates the comment, ``approved`` republishes
  (green);
- ``ctx.permissions``: a user's role on a repository (who may authorise a waiting run).

Publishing never blocks the caller (a webhook answer, a worker's next run): each event of a
GitHub run becomes a publish job on the publish queue (:mod:`diffie.publishing`), which a
worker runs and retries with GitHub's backoff. A job converges GitHub to the run's stored state
(safe to repeat, safe out of order) while it holds the pull request's lease, so two processes
never update the same PR comment at once. ``run.published`` stays false until the final result
is on GitHub; the deployment's periodic sweep queues whatever is still owed: a GitHub outage
never loses a result.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from diffie import leases
from diffie.config import Settings
from diffie.db import Database
from diffie.errors import Busy, GitHubError, SourceError
from diffie.github import checks, trust
from diffie.github.client import GitHubClient
from diffie.github.publish import publish, publish_cancelled
from diffie.github.repo_cache import SourceCache
from diffie.models import FINISHED, Change, Run, utcnow
from diffie.verdict import Verdict

if TYPE_CHECKING:
    from diffie.app_context import AppContext

log = logging.getLogger(__name__)

SWEEP_WINDOW = timedelta(days=3)     # unpublished results older than this are left alone
PR_LEASE_S = 120.0                   # one publisher per pull request (its comment) at a time


def configured(settings: Settings) -> bool:
    return bool(settings.github_app_id.strip()) and settings.github_private_key_path is not None


def install(ctx: AppContext) -> GitHubPublisher | None:
    """Register the GitHub source provider and publisher on ``ctx`` (no-op when the app is not
    configured). A configured but unusable key fails here, at start-up (ConfigError)."""
    settings = ctx.settings
    if not configured(settings):
        log.info("GitHub App not configured (DIFFIE_GITHUB_APP_ID, "
                 "DIFFIE_GITHUB_PRIVATE_KEY_PATH): no GitHub publishing")
        return None
    client = GitHubClient.from_settings(settings)
    cache = SourceCache.from_settings(settings)
    ctx.sources["github"] = GitHubSource(ctx.db, client, cache)

    def permission(installation_id: int, owner: str, repo: str, login: str) -> str:
        return trust.repository_permission(client, installation_id=installation_id, owner=owner,
                                           repo=repo, username=login)

    ctx.permissions = permission

    def send(run_id: str, kind: str) -> None:
        ctx.publish("github", run_id, kind)

    publisher = GitHubPublisher(ctx.db, settings, client, cache, send=send)
    ctx.publishers["github"] = publisher
    ctx.events.subscribe(publisher)
    return publisher


# -- source ------------------------------------------------------------------------------------

class GitHubSource:
    """``SourceProvider`` for ``mode == "github"`` changes (see ``diffie.deps``)."""

    def __init__(self, db: Database, client: GitHubClient, cache: SourceCache) -> None:
        self.db = db
        self.client = client
        self.cache = cache

    def materialise(self, change: Any, base_dest: Path, head_dest: Path) -> tuple[str, str]:
        """Fetch and export base and head of the run's pull request; (base sha, head sha)."""
        with self.db.session() as s:
            run = s.get(Run, change.run_id)
            ch = run.change if run is not None else None
            if ch is None or ch.installation_id is None or not ch.gh_owner or not ch.gh_repo:
                raise SourceError(f"run {change.run_id} is not a GitHub pull request change")
            inst, owner, repo, number = ch.installation_id, ch.gh_owner, ch.gh_repo, ch.pr_number
        if not change.repo or not change.base_rev or not change.head_rev:
            raise SourceError("the change needs a repository and base and head revisions")
        try:
            token = self.client.installation_token(inst)
        except GitHubError as exc:
            raise SourceError(f"no installation token for {owner}/{repo}: {exc}") from None
        self.cache.fetch_pull_request(owner=owner, repo=repo, base_url=change.repo,
                                      base_sha=change.base_rev, head_url=change.head_repo_url,
                                      head_sha=change.head_rev, token=token, pr_number=number)
        self.cache.checkout(owner, repo, change.base_rev, base_dest)
        self.cache.checkout(owner, repo, change.head_rev, head_dest)
        return change.base_rev, change.head_rev


# -- publisher -----------------------------------------------------------------------------------

def _snapshot(run: Run) -> Run:
    """A detached copy of a run and its change (publishing talks to GitHub outside any DB
    transaction)."""
    c = run.change
    change = Change(id=c.id, mode=c.mode, repo=c.repo, base_rev=c.base_rev, head_rev=c.head_rev,
                    installation_id=c.installation_id, gh_owner=c.gh_owner, gh_repo=c.gh_repo,
                    pr_number=c.pr_number, head_repo_url=c.head_repo_url, title=c.title,
                    untrusted_head=c.untrusted_head, author=c.author)
    return Run(id=run.id, change=change, status=run.status, reason=run.reason,
               verdict=run.verdict, approved=bool(run.approved),
               check_run_id=run.check_run_id, published=bool(run.published),
               authorized_by=run.authorized_by, phase=run.phase)


class GitHubPublisher:
    """The ``github`` publisher (:class:`diffie.publishing.Publisher`) and a run listener whose
    events (``waiting``/``queued``/``started``/``finished``/``approved``) of GitHub runs become
    publish jobs (``send``)."""

    def __init__(self, db: Database, settings: Settings, client: GitHubClient,
                 cache: SourceCache | None = None, *,
                 send: Callable[[str, str], None] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.client = client
        self.cache = cache
        self.send = send

    def close(self) -> None:
        """The process is done with GitHub (``AppContext.close``): its connections go."""
        self.client.close()

    # RunListener
    def waiting(self, run_id: str) -> None:
        self._queue(run_id, "waiting")

    def queued(self, run_id: str) -> None:
        self._queue(run_id, "queued")

    def started(self, run_id: str) -> None:
        self._queue(run_id, "started")

    def finished(self, run_id: str) -> None:
        self._queue(run_id, "finished")

    def approved(self, run_id: str) -> None:
        self._queue(run_id, "approved")

    def _queue(self, run_id: str, kind: str) -> None:
        if self.send is None:
            return
        with self.db.session() as s:
            mode = s.scalar(select(Change.mode).join(Run).where(Run.id == run_id))
        if mode == "github":
            self.send(run_id, kind)

    # Publisher

    def publish(self, run_id: str, kind: str) -> str:
        """Make GitHub show what run ``run_id`` is now (``kind``: the event that asked); raises
        GitHubUnavailable (GitHub down, rate limit) or Busy (another process is publishing to
        the same pull request) to be tried again."""
        with self.db.session() as s:
            row = s.get(Run, run_id)
            if row is None or row.change.mode != "github":
                return "not a GitHub run"
            run = _snapshot(row)
        with self._pull_request_lease(run):
            return self._converge(run)

    @contextmanager
    def _pull_request_lease(self, run: Run) -> Iterator[None]:
        ch = run.change
        name = f"github:{ch.gh_owner}/{ch.gh_repo}#{ch.pr_number}"
        holder = uuid.uuid4().hex
        if not leases.take(self.db, name, holder, PR_LEASE_S):
            raise Busy(f"another process is publishing to {ch.gh_owner}/{ch.gh_repo}"
                       f"#{ch.pr_number}")
        try:
            yield
        finally:
            leases.release(self.db, name, holder)

    def _converge(self, run: Run) -> str:
        with self.db.session() as s:         # the state now, under the lease
            row = s.get(Run, run.id)
            if row is not None:
                run = _snapshot(row)
        before = (run.check_run_id, run.published)
        # what GitHub should show follows the run's state, not the event that asked (a retried
        # "queued" job after the run started, a "started" one after it finished)
        if run.status == "waiting":
            checks.await_authorization(self.client, run, self.settings,
                                       reason=self._waiting_reason(run))
            done = "check run waiting for authorization"
        elif run.status == "queued":
            checks.create_queued(self.client, run, self.settings)
            done = "check run queued"
        elif run.status == "running":
            if run.check_run_id is None:
                checks.create_queued(self.client, run, self.settings)
            checks.mark_in_progress(self.client, run, self.settings)
            done = "check run in progress"
        elif run.status in FINISHED:
            done = self._publish_final(run)
        else:
            return f"run is {run.status}"
        if (run.check_run_id, run.published) != before:
            with self.db.session() as s:
                s.execute(update(Run).where(Run.id == run.id).values(
                    check_run_id=run.check_run_id, published=run.published))
        return done

    def _publish_final(self, run: Run) -> str:
        if run.status == "cancelled":
            reason = run.reason or "cancelled"
            publish_cancelled(run, self.settings, self.client,
                              reason=(reason[:1].upper() + reason[1:])[:1000])
            run.published = True
            return "check run cancelled"
        if run.status not in ("done", "error") or not run.verdict:
            return f"run is {run.status}"
        verdict = Verdict.model_validate(run.verdict)
        result = publish(run, verdict, self.settings, self.client,
                         repo_files=self._repo_files(run))
        return f"published: {result.conclusion}"

    def _waiting_reason(self, run: Run) -> str:
        ch = run.change
        policy = trust.policy_for(self.settings, ch.gh_owner or "", ch.gh_repo or "")
        return trust.approval_reason(policy, is_fork=bool(ch.head_repo_url))

    def _repo_files(self, run: Run) -> list[str] | None:
        ch = run.change
        if self.cache is None or not ch.gh_owner or not ch.gh_repo or not ch.head_rev:
            return None
        try:
            return self.cache.list_files(ch.gh_owner, ch.gh_repo, ch.head_rev)
        except SourceError:
            return None       # not fetched on this host: findings keep their text only

    def pending(self, min_age_s: float) -> list[tuple[str, str]]:
        """GitHub runs whose result (or "Authorize run" check run) is not on GitHub yet:
        finished at least ``min_age_s`` ago and unpublished; waiting without a check run."""
        now = utcnow()
        since, settled = now - SWEEP_WINDOW, now - timedelta(seconds=min_age_s)
        with self.db.session() as s:
            finished = list(s.scalars(
                select(Run.id).join(Change)
                .where(Change.mode == "github", Run.status.in_(FINISHED),
                       Run.published.is_(False), Run.created_at >= since,
                       Run.finished_at.is_(None) | (Run.finished_at <= settled))
                .order_by(Run.created_at).limit(100)))
            waiting = list(s.scalars(
                select(Run.id).join(Change)
                .where(Change.mode == "github", Run.status == "waiting",
                       Run.check_run_id.is_(None), Run.created_at >= since,
                       Run.created_at <= settled)
                .order_by(Run.created_at).limit(100)))
        return [(r, "finished") for r in finished] + [(r, "waiting") for r in waiting]
