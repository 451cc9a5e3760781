"""Approvals that stick: a visual change approved once (from the API, the CLI, the MCP server
or GitHub's "Approve" button — all through :func:`approve`) is remembered by its fingerprint
(:func:`diffie.compare.visual.fingerprint`: flow, viewport, screenshot and the head's pixels
where it changed) for the change's *subject*: the pull request, the repository, or the pair of
URLs. A later run of the same subject whose finding has the same fingerprint reports it as
approved (``Finding.approval``) and it does not make the run ``changed``
(:func:`diffie.verdict.judge`); anything else on that screenshot, or another rendering of the
same area, is a new finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from diffie.models import Approval, Change, Run, utcnow
from diffie.verdict import CHANGE_KINDS

NOTE_CHARS = 500


def subject_of(change: Change) -> str:
    """Whose approvals apply: one pull request, one repository, one base/head URL pair."""
    if change.mode == "github" and change.gh_owner and change.gh_repo:
        return f"github:{change.gh_owner}/{change.gh_repo}#{change.pr_number}"
    if change.mode == "repo":
        return f"repo:{change.repo}"
    return f"url:{change.base_url} {change.head_url}"


def approvals_for(s: Session, subject: str) -> dict[str, str]:
    """fingerprint → "approved by WHO on DATE: NOTE" of every approval of ``subject``."""
    out = {}
    for a in s.scalars(select(Approval).where(Approval.subject == subject)):
        when = a.created_at.strftime("%Y-%m-%d %H:%M UTC") if a.created_at else ""
        out[a.fingerprint] = (f"approved by {a.approved_by} on {when} (run {a.run_id[:8]})"
                              + (f": {a.note}" if a.note else ""))
    return out


@dataclass
class Approved:
    """What :func:`approve` did."""

    approved: list[str] = field(default_factory=list)       # finding ids now approved
    unknown: list[str] = field(default_factory=list)        # ids the run does not have
    not_visual: list[str] = field(default_factory=list)     # errors cannot be approved
    whole_run: bool = False                                 # every visual change is approved


def approve(s: Session, run: Run, finding_ids: list[str] | None, *, by: str,
            note: str | None = None) -> Approved:
    """Approve ``finding_ids`` of ``run`` (None: every visual change of it): remember each
    fingerprint for the run's subject and mark the findings in the run's verdict. When no
    visual change of the run is left unapproved, the run is approved (its check turns green;
    the caller emits the ``approved`` event so publishers say so)."""
    verdict: dict[str, Any] = dict(run.verdict or {})
    findings = [dict(f) for f in verdict.get("findings") or []]
    by_id = {str(f.get("id")): f for f in findings}
    result = Approved()
    wanted = list(by_id) if finding_ids is None else list(dict.fromkeys(finding_ids))
    subject = subject_of(run.change)
    known = {a.fingerprint for a in s.scalars(select(Approval).where(
        Approval.subject == subject))}
    note = (note or "").strip()[:NOTE_CHARS] or None
    who = by.strip()[:200] or "someone"
    for fid in wanted:
        f = by_id.get(fid)
        if f is None:
            result.unknown.append(fid)
            continue
        if f.get("kind") not in CHANGE_KINDS:
            if finding_ids is not None:
                result.not_visual.append(fid)
            continue
        fp = str((f.get("details") or {}).get("fingerprint") or "")
        if fp and fp not in known:
            s.add(Approval(subject=subject, fingerprint=fp, run_id=run.id, finding_id=fid,
                           approved_by=who, note=note, created_at=utcnow()))
            known.add(fp)
        f["approval"] = f"approved by {who} on {utcnow():%Y-%m-%d %H:%M UTC}" + \
            (f": {note}" if note else "")
        result.approved.append(fid)
    left = [f for f in findings if f.get("kind") in CHANGE_KINDS and not f.get("approval")]
    result.whole_run = bool(result.approved) and not left
    if result.approved:
        verdict["findings"] = findings
        if result.whole_run:
            verdict["approved"] = True
            run.approved = True
            if run.status in ("done", "error"):
                run.published = False        # republished green (the sweep retries)
        run.verdict = verdict
    return result
