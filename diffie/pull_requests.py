"""Runs of GitHub pull requests in the database: record, supersede, cancel, re-run, approve.

The webhook router (:mod:`diffie.api.webhooks`) calls these inside the transaction that records
the delivery, so a replayed delivery changes nothing. Decisions come from
:func:`diffie.github.events.decide`; this module only applies them.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from diffie.github.events import Action, PullRequestEvent
from diffie.models import Change, Run, utcnow
from diffie.runs import create_run

ACTIVE = ("queued", "running")


def cancel_runs(s: Session, run_ids: list[str], reason: str) -> list[str]:
    """Cancel those of ``run_ids`` still queued or running (a running one's worker notices at
    its next heartbeat and stops)."""
    cancelled = []
    for run_id in run_ids:
        result = s.execute(update(Run).where(Run.id == run_id, Run.status.in_(ACTIVE)).values(
            status="cancelled", phase="cancelled", reason=reason, finished_at=utcnow())
            .execution_options(synchronize_session=False))
        if result.rowcount == 1:  # type: ignore[attr-defined]
            cancelled.append(run_id)
    return cancelled


def active_pr_runs(s: Session, owner: str, repo: str, number: int) -> list[str]:
    return list(s.scalars(
        select(Run.id).join(Change).where(Change.mode == "github", Change.gh_owner == owner,
                                          Change.gh_repo == repo, Change.pr_number == number,
                                          Run.status.in_(ACTIVE))))


def record_pull_request(s: Session, ev: PullRequestEvent, *, supersede: bool) -> tuple[str, list[str]]:
    """A Change of mode ``github`` and its queued Run. Returns (run id, superseded run ids)."""
    superseded: list[str] = []
    if supersede:
        superseded = cancel_runs(s, active_pr_runs(s, ev.owner, ev.repo, ev.number),
                                 f"superseded by a newer push ({ev.head_sha[:12]})")
    change = Change(
        mode="github", repo=ev.base_clone_url, base_rev=ev.base_sha, head_rev=ev.head_sha,
        installation_id=ev.installation_id, gh_owner=ev.owner, gh_repo=ev.repo,
        pr_number=ev.number, head_repo_url=ev.head_clone_url if ev.is_fork else None,
        title=ev.title[:1000] or None)
    return create_run(s, change).id, superseded


def cancel_pr(s: Session, action: Action) -> list[str]:
    if action.pr_number is None:
        return []
    return cancel_runs(s, active_pr_runs(s, action.owner, action.repo, action.pr_number),
                       action.reason)


def _find_run(s: Session, action: Action) -> Run | None:
    if action.run_id:
        run = s.get(Run, action.run_id)
        if run is not None and run.change.gh_owner == action.owner \
                and run.change.gh_repo == action.repo:
            return run
    if action.check_run_id is not None:
        run = s.scalars(select(Run).join(Change).where(
            Run.check_run_id == action.check_run_id, Change.gh_owner == action.owner,
            Change.gh_repo == action.repo)).first()
        if run is not None:
            return run
    if action.head_sha:
        query = (select(Run).join(Change)
                 .where(Change.mode == "github", Change.gh_owner == action.owner,
                        Change.gh_repo == action.repo, Change.head_rev == action.head_sha)
                 .order_by(Run.created_at.desc()))
        if action.pr_numbers:
            query = query.where(Change.pr_number.in_(action.pr_numbers))
        return s.scalars(query).first()
    return None


def rerun(s: Session, action: Action) -> tuple[str | None, list[str]]:
    """A new queued Run of the change the check run/suite refers to (older ones cancelled)."""
    old = _find_run(s, action)
    if old is None:
        return None, []
    change = old.change
    superseded = cancel_runs(s, [r.id for r in change.runs if r.status in ACTIVE],
                             "superseded by a re-run request")
    run = Run(change_id=change.id, status="queued", phase="queued")
    s.add(run)
    s.flush()
    return run.id, superseded


def approve(s: Session, action: Action) -> str | None:
    """Mark a finished run's visual changes approved (its verdict says so too)."""
    run = _find_run(s, action)
    if run is None:
        return None
    run.approved = True
    if run.status in ("done", "error"):
        run.published = False   # republished green; if GitHub is down, the sweep does it later
    if run.verdict is not None:
        run.verdict = {**run.verdict, "approved": True}
    return run.id
