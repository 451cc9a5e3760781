"""Publish a run's verdict to its pull request: the completed check run and the PR comment.

``publish`` is idempotent (it finds and updates what an earlier attempt created) and lets
:class:`~diffie.errors.GitHubUnavailable` through when GitHub is down or rate-limits us: the
verdict stays in the database with ``run.published`` false, and the caller retries later (for
instance a Celery retry with ``countdown=exc.retry_after or 60``). A GitHub outage never loses
a result.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from diffie import links
from diffie.config import Settings
from diffie.github import checks
from diffie.github.client import GitHubClient
from diffie.github.comments import MARKER, upsert_comment
from diffie.github.summary import comment_body
from diffie.models import Run
from diffie.verdict import Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishResult:
    check_run_id: int
    comment_id: int | None
    conclusion: str


def publish(run: Run, verdict: Verdict, settings: Settings, client: GitHubClient, *,
            repo_files: Collection[str] | None = None, comment: bool = True) -> PublishResult:
    """Complete the run's check run with the verdict and create/update the PR comment.

    Sets ``run.check_run_id`` and, on success, ``run.published = True``; the caller commits.
    ``repo_files`` (paths in the head commit, e.g. ``SourceCache.list_files``) lets findings
    that name a source URL and line become annotations. Raises GitHubUnavailable (retry
    later) or GitHubError (a request GitHub refuses: do not retry)."""
    target = checks.Target.of(run)
    approved = bool(run.approved or verdict.approved)
    url = links.fresh_report_url(settings, run.id, verdict.report_url)
    conclusion = checks.complete(client, run, verdict, settings, approved=approved,
                                 repo_files=repo_files)
    comment_id: int | None = None
    if comment and target.pr_number is not None:
        comment_id = upsert_comment(
            client, installation_id=target.installation_id, owner=target.owner,
            repo=target.repo, number=target.pr_number,
            body=comment_body(MARKER, verdict, report_url=url, approved=approved))
    run.published = True
    assert run.check_run_id is not None
    log.info("published run %s to %s/%s@%s: %s", run.id, target.owner, target.repo,
             target.head_sha[:12], conclusion)
    return PublishResult(run.check_run_id, comment_id, conclusion)


def publish_cancelled(run: Run, settings: Settings, client: GitHubClient, *,
                      reason: str = "Superseded by a newer push.") -> None:
    """A superseded or cancelled run: its check run (if any) completes as ``cancelled``."""
    checks.cancel(client, run, settings, reason=reason)
