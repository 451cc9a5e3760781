"""Runs of GitHub pull requests in the database: record, supersede, cancel, re-run, approve,
authorise; and the newest head of each pull request (stale deliveries start nothing).

The webhook router (:mod:`diffie.api.webhooks`) calls these inside the transaction that records
the delivery, so a replayed delivery changes nothing. Decisions come from
:func:`diffie.github.webhook_events.decide`; this module only applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from diffie import approvals
from diffie.github.trust import AUTHORIZING_ROLES
from diffie.github.webhook_events import Action, PullRequestEvent
from diffie.models import Change, PullHead, Run, utcnow
from diffie.run_store import ACTIVE, as_utc, cancel_runs, create_run


def note_head(s: Session, ev: PullRequestEvent) -> str | None:
    """Record ``ev``'s head as the pull request's newest unless a newer one was seen; returns
    why the delivery is stale (None when it is not). Newer = a later ``pull_request.updated_at``
    (GitHub's clock, not the order deliveries arrive in); an equal one is the same delivery
    again (a redelivery) and is not stale."""
    if ev.updated_at is None:
        return None if ev.action not in ("opened", "synchronize", "reopened",
                                          "ready_for_review", "edited") else \
            "stale head: the delivery has no pull_request.updated_at to order it by"
    owner, repo = ev.owner.lower(), ev.repo.lower()
    row = s.scalars(select(PullHead).where(PullHead.gh_owner == owner, PullHead.gh_repo == repo,
                                           PullHead.pr_number == ev.number)
                    .with_for_update()).first()
    if row is None:
        s.add(PullHead(gh_owner=owner, gh_repo=repo, pr_number=ev.number, head_sha=ev.head_sha,
                       updated_at=ev.updated_at))
        s.flush()
        return None
    newest = as_utc(row.updated_at) or datetime.min.replace(tzinfo=UTC)
    if ev.updated_at < newest:
        return (f"stale head: {ev.head_sha[:12]} is from {ev.updated_at.isoformat()}, but the "
                f"pull request's newest head is {row.head_sha[:12]} from {newest.isoformat()}")
    row.head_sha, row.updated_at, row.seen_at = ev.head_sha, ev.updated_at, utcnow()
    return None


def active_pr_runs(s: Session, owner: str, repo: str, number: int) -> list[str]:
    return list(s.scalars(
        select(Run.id).join(Change).where(Change.mode == "github", Change.gh_owner == owner,
                                          Change.gh_repo == repo, Change.pr_number == number,
                                          Run.status.in_(ACTIVE))))


def record_pull_request(s: Session, ev: PullRequestEvent, *, supersede: bool) -> tuple[str, list[str]]:
    """A Change of mode ``github`` and its queued Run. Returns (run id, superseded run ids)."""
    return record(s, ev, supersede=supersede, waiting=False, untrusted_head=False)


def record(s: Session, ev: PullRequestEvent, *, supersede: bool, waiting: bool,
           untrusted_head: bool) -> tuple[str, list[str]]:
    """A Change of mode ``github`` and its Run, ``waiting`` for a maintainer or ``queued``.
    Returns (run id, superseded run ids)."""
    superseded: list[str] = []
    if supersede:
        superseded = cancel_runs(s, active_pr_runs(s, ev.owner, ev.repo, ev.number),
                                 f"superseded by a newer push ({ev.head_sha[:12]})")
    change = Change(
        mode="github", repo=ev.base_clone_url, base_rev=ev.base_sha, head_rev=ev.head_sha,
        installation_id=ev.installation_id, gh_owner=ev.owner, gh_repo=ev.repo,
        pr_number=ev.number, head_repo_url=ev.head_clone_url if ev.is_fork else None,
        title=ev.title[:1000] or None, untrusted_head=untrusted_head or ev.is_fork,
        author=ev.author or None, approval_required=waiting)
    run = create_run(s, change)
    if waiting:
        run.status, run.phase = "waiting", "waiting for authorization"
    return run.id, superseded


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
    if change.approval_required and not any(r.authorized_by for r in change.runs):
        # a re-run is no way around the maintainer: unauthorised code waits again
        run.status, run.phase = "waiting", "waiting for authorization"
    s.add(run)
    s.flush()
    return run.id, superseded


def approve(s: Session, action: Action) -> str | None:
    """Mark a finished run's visual changes approved (its verdict says so too)."""
    run = _find_run(s, action)
    if run is None:
        return None
    # every visual change of the run, remembered for the pull request (diffie.approvals)
    approvals.approve(s, run, None, by=action.sender or "GitHub", note="approved on GitHub")
    run.approved = True
    if run.status in ("done", "error"):
        run.published = False   # republished green; if GitHub is down, the sweep does it later
    if run.verdict is not None:
        run.verdict = {**run.verdict, "approved": True}
    return run.id


@dataclass(frozen=True)
class Authorization:
    run_id: str | None           # the run now queued (None: refused or nothing found)
    refused: str | None = None   # why not


def authorize(s: Session, action: Action, role: str) -> Authorization:
    """Queue the waiting run the "Authorize run" button belongs to, if the sender's ``role`` on
    the repository (admin, maintain, write, triage, read, none) lets them."""
    run = _find_run(s, action)
    if run is None:
        return Authorization(None, "no run of Diffie's matches this check run")
    who = action.sender or "an unknown user"
    if role not in AUTHORIZING_ROLES:
        return Authorization(None, f"{who} has {role} permission on {action.owner}/{action.repo}; "
                             "authorizing a run needs write, maintain or admin: ask a "
                             "maintainer to click \"Authorize run\"")
    if run.status != "waiting":
        return Authorization(None, f"run {run.id} is {run.status}, not waiting for "
                             "authorization")
    run.status, run.phase = "queued", "queued"
    run.authorized_by = action.sender[:200]
    run.heartbeat_at = utcnow()        # queued now: the lost-run recovery counts from here
    run.check_run_id = None            # a completed check run cannot go back: a new one
    return Authorization(run.id)


def undo_enqueue(s: Session, run_id: str, *, authorized: bool) -> None:
    """The broker refused a run the webhook just recorded: take it back, so GitHub's redelivery
    of the same delivery records it again (an authorised run waits again)."""
    run = s.get(Run, run_id)
    if run is None or run.status != "queued":
        return
    if authorized:
        run.status, run.phase, run.authorized_by = "waiting", "waiting for authorization", None
        return
    change = run.change
    s.delete(run)
    s.flush()
    if not s.scalars(select(Run.id).where(Run.change_id == change.id)).first():
        s.execute(delete(Change).where(Change.id == change.id))
