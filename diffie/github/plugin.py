"""Diffie's GitHub App, plugged into a process: ``install(ctx)`` (called by
``diffie.composition.build_context``) when the app is configured
(``DIFFIE_GITHUB_APP_ID`` and ``DIFFIE_GITHUB_PRIVATE_KEY_PATH``):

- ``ctx.sources["github"]``: :class:`GitHubSource` fetches a pull request's base and head with
  the installation token (forks included) from the cache of bare repositories;
- ``ctx.events``: :class:`GitHubPublisher` keeps the check run and the PR comment in step with
  the run — ``waiting`` completes it ``action_required`` with "Authorize run", ``queued``
  creates the check run, ``started`` marks it in progress, ``finished`` completes it (or
  cancels it) and updates the comment, ``approved`` republishes (green);
- ``ctx.permissions``: a user's role on a repository (who may authorise a waiting run).

Publishing never blocks the caller (a webhook answer, a worker's next task): it runs on one
background thread per process, in event order. When GitHub is down or rate-limits us the
attempt is retried later with backoff, and ``run.published`` stays false until it succeeds, so
a periodic sweep (every ``DIFFIE_GITHUB_SWEEP_INTERVAL_S``, and at every process start)
publishes whatever an earlier attempt or process could not: a GitHub outage never loses a
result.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from diffie.config import Settings
from diffie.db import Database
from diffie.errors import GitHubError, GitHubUnavailable, SourceError
from diffie.github import checks, trust
from diffie.github.client import GitHubClient
from diffie.github.publish import publish, publish_cancelled
from diffie.github.source import SourceCache
from diffie.models import FINISHED, Change, Run, utcnow
from diffie.verdict import Verdict

if TYPE_CHECKING:
    from diffie.app_context import AppContext

log = logging.getLogger(__name__)

SWEEP_WINDOW = timedelta(days=3)     # unpublished results older than this are left alone
MAX_RETRIES = 12                     # per run and process; the next start's sweep goes on
MAX_RETRY_DELAY_S = 900.0


def configured(settings: Settings) -> bool:
    return bool(settings.github_app_id.strip()) and settings.github_private_key_path is not None


def install(ctx: AppContext, *, background: bool = True) -> GitHubPublisher | None:
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
    publisher = GitHubPublisher(ctx.db, settings, client, cache, background=background)
    ctx.events.subscribe(publisher)
    if background:
        publisher.submit("sweep", "")
        publisher.start_sweeps(settings.github_sweep_interval_s)
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
    """A run listener (``waiting``/``queued``/``started``/``finished``/``approved``) publishing
    to GitHub."""

    def __init__(self, db: Database, settings: Settings, client: GitHubClient,
                 cache: SourceCache | None = None, *, background: bool = True) -> None:
        self.db = db
        self.settings = settings
        self.client = client
        self.cache = cache
        self._executor = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="github-publish")
                          if background else None)
        self._attempts: dict[tuple[str, str], int] = {}
        self._timers: set[threading.Timer] = set()
        self._closed = False
        self._lock = threading.Lock()
        self._sweep_interval_s = 0.0
        self._sweep_pending = False

    # RunListener
    def waiting(self, run_id: str) -> None:
        self.submit("waiting", run_id)

    def queued(self, run_id: str) -> None:
        self.submit("queued", run_id)

    def started(self, run_id: str) -> None:
        self.submit("started", run_id)

    def finished(self, run_id: str) -> None:
        self.submit("finished", run_id)

    def approved(self, run_id: str) -> None:
        self.submit("approved", run_id)

    def submit(self, kind: str, run_id: str) -> Future[None] | None:
        if self._executor is None:
            self._attempt(kind, run_id)
            return None
        if self._closed:
            return None
        return self._executor.submit(self._attempt, kind, run_id)

    def start_sweeps(self, interval_s: float) -> None:
        """Sweep every ``interval_s`` seconds until closed (a long-lived worker or API process
        publishes what GitHub refused during an outage without waiting for a restart)."""
        if interval_s <= 0 or self._executor is None or self._closed:
            return
        self._sweep_interval_s = interval_s

        def tick() -> None:
            with self._lock:
                self._timers.discard(timer)
                pending, self._sweep_pending = self._sweep_pending, True
            if not pending:                 # at most one periodic sweep waiting at a time
                self.submit("sweep", "")
            self.start_sweeps(interval_s)

        timer = threading.Timer(interval_s, tick)
        timer.daemon = True
        with self._lock:
            if self._closed:
                return
            self._timers.add(timer)
        timer.start()

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until the work submitted so far is done (tests, shutdown)."""
        if self._executor is not None:
            self._executor.submit(lambda: None).result(timeout=timeout_s)

    def close(self) -> None:
        """Stop: pending retries are dropped (the next start's sweep publishes them)."""
        self._closed = True
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _attempt(self, kind: str, run_id: str) -> None:
        try:
            if kind == "sweep":
                with self._lock:
                    self._sweep_pending = False
                self.sweep()
            else:
                self.handle(kind, run_id)
            with self._lock:
                self._attempts.pop((kind, run_id), None)
        except GitHubUnavailable as exc:
            self._retry_later(kind, run_id, exc)
        except Exception:
            log.exception("GitHub: %s of run %s failed", kind, run_id)

    def _retry_later(self, kind: str, run_id: str, exc: GitHubUnavailable) -> None:
        if kind == "sweep" and self._sweep_interval_s > 0:
            log.warning("GitHub unavailable during the sweep (%s); the next sweep retries", exc)
            return
        with self._lock:
            n = self._attempts.get((kind, run_id), 0) + 1
            self._attempts[(kind, run_id)] = n
        if n > MAX_RETRIES or self._executor is None:
            log.error("GitHub: %s of run %s not published (%s); the next start retries",
                      kind, run_id, exc)
            return
        delay = min(MAX_RETRY_DELAY_S, exc.retry_after or 15.0 * 2 ** (n - 1))
        log.warning("GitHub unavailable for %s of run %s (%s); retrying in %.0fs", kind, run_id,
                    exc, delay)
        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
            self.submit(kind, run_id)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()

    # -- the work (synchronous; raises GitHubUnavailable to be retried) ------------------------

    def handle(self, kind: str, run_id: str) -> str:
        """Publish one event of one run; returns what was done."""
        with self.db.session() as s:
            row = s.get(Run, run_id)
            if row is None or row.change.mode != "github":
                return "not a GitHub run"
            run = _snapshot(row)
        before = (run.check_run_id, run.published)
        if kind == "waiting":
            if run.status != "waiting":
                return f"run is {run.status}"
            checks.await_authorization(self.client, run, self.settings,
                                       reason=self._waiting_reason(run))
            done = "check run waiting for authorization"
        elif kind == "queued":
            checks.create_queued(self.client, run, self.settings)
            done = "check run queued"
        elif kind == "started":
            if run.status != "running":
                return f"run is {run.status}"
            checks.mark_in_progress(self.client, run, self.settings)
            done = "check run in progress"
        elif kind in ("finished", "approved"):
            done = self._publish_final(run)
        else:
            raise ValueError(f"unknown event {kind!r}")
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

    def sweep(self, limit: int = 100) -> list[str]:
        """Publish finished GitHub runs an earlier attempt could not (GitHub was down)."""
        since = utcnow() - SWEEP_WINDOW
        with self.db.session() as s:
            ids = list(s.scalars(
                select(Run.id).join(Change)
                .where(Change.mode == "github", Run.status.in_(FINISHED),
                       Run.published.is_(False), Run.created_at >= since)
                .order_by(Run.created_at).limit(limit)))
        done = []
        for run_id in ids:
            try:
                self.handle("finished", run_id)
                done.append(run_id)
            except GitHubUnavailable:
                raise
            except Exception:
                log.exception("GitHub: publishing run %s failed", run_id)
        if ids:
            log.info("GitHub: published %d of %d pending run(s)", len(done), len(ids))
        with self.db.session() as s:
            waiting = list(s.scalars(
                select(Run.id).join(Change)
                .where(Change.mode == "github", Run.status == "waiting",
                       Run.check_run_id.is_(None), Run.created_at >= since)
                .order_by(Run.created_at).limit(limit)))
        for run_id in waiting:                   # their "Authorize run" check run never landed
            try:
                self.handle("waiting", run_id)
                done.append(run_id)
            except GitHubUnavailable:
                raise
            except Exception:
                log.exception("GitHub: the waiting check run of run %s failed", run_id)
        return done
