"""The public verdict: what agents, engineers and GitHub read. A stable JSON contract.

``schemas/verdict.schema.json`` is generated from :class:`Verdict` (``diffie schema``) and served
at ``GET /v1/schema/verdict.json``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal["pass", "changed", "fail", "error"]
FindingKind = Literal[
    "console_error",      # new console.error in head
    "page_error",         # new uncaught exception in head
    "request_failed",     # new failed request / HTTP >= 400 in head
    "step_failed",        # an action step (goto, click, fill, ...) failed in head
    "assertion_failed",   # an expect_* step failed in head
    "visual_change",      # a screenshot differs between base and head
    "size_change",        # a screenshot changed dimensions (page got taller, ...)
    "deploy_error",       # the change could not be deployed in the sandbox
    "blocked_request",    # the browser was kept from leaving the app's origin (never sent)
]
ERROR_KINDS: frozenset[str] = frozenset({
    "console_error", "page_error", "request_failed", "step_failed", "assertion_failed",
    "deploy_error", "blocked_request",
})
CHANGE_KINDS: frozenset[str] = frozenset({"visual_change", "size_change"})


class Region(BaseModel):
    x: int
    y: int
    width: int
    height: int
    pixels: int = 0
    elements: list[dict[str, str]] = Field(default_factory=list)   # {selector, text}


class Finding(BaseModel):
    id: str = ""
    kind: FindingKind
    flow: str | None = None
    viewport: str | None = None
    step: int | None = None
    step_description: str | None = None
    message: str
    evidence: list[str] = Field(default_factory=list)      # artifact names
    details: dict[str, Any] = Field(default_factory=dict)
    pre_existing: bool = False                              # also failed on base: not blamed
    regions: list[Region] = Field(default_factory=list)
    # a visual change approved before (same fingerprint: diffie.approvals): who, when, note
    approval: str | None = None

    def with_id(self) -> Finding:
        key = "|".join(str(x) for x in (self.kind, self.flow, self.viewport, self.step,
                                         self.details.get("key", self.message)))
        self.id = "f-" + hashlib.sha256(key.encode()).hexdigest()[:12]
        return self

    @property
    def is_error(self) -> bool:
        return self.kind in ERROR_KINDS and not self.pre_existing


class Flaky(BaseModel):
    """Differences between two renders of the same code: evidence of noise, not findings.

    A screenshot whose two renders of head differed (``screenshot``, ``pixels``), or a step that
    failed on head but passed on head's second render from the same deployed state (``step``,
    ``reason``): a slow guest or a race, not the change."""

    flow: str
    viewport: str
    screenshot: str = ""
    pixels: int = 0
    evidence: list[str] = Field(default_factory=list)
    step: int | None = None
    reason: str | None = None


class Coverage(BaseModel):
    """How much of one flow × viewport was verified: steps in the spec, steps run per side."""

    flow: str
    viewport: str
    steps: int                        # steps the spec gives the flow
    base_ran: int | None = None       # steps run on base (None: base has no such capture)
    head_ran: int | None = None
    verified: bool = True             # every step ran on head and was compared with base


class NotVerified(BaseModel):
    """A flow × viewport that stopped at the same step on both sides: that step and every step
    after it were verified on neither side. Not a finding (the change did not cause it), but
    the verdict says so: a pass covers less than the spec asks."""

    flow: str
    viewport: str
    step: int                          # index of the step that failed on both sides
    step_description: str | None = None
    steps_not_run: int = 0             # steps after it that never ran
    message: str
    evidence: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)


class Verdict(BaseModel):
    schema_version: Literal["1"] = "1"
    run_id: str
    status: Status
    summary: str
    reason: str | None = None                 # why the run is `error`
    findings: list[Finding] = Field(default_factory=list)
    flaky: list[Flaky] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    flows: int = 0
    viewports: int = 0
    duration_s: float | None = None
    report_url: str | None = None
    approved: bool = False
    # per flow × viewport: steps run on each side; entries that stopped on both sides
    coverage: list[Coverage] = Field(default_factory=list)
    not_verified: list[NotVerified] = Field(default_factory=list)


NOT_VERIFIED_NAMED = 3      # flow × viewport pairs named in the summary


def coverage_text(coverage: list[Coverage], not_verified: list[NotVerified]) -> str:
    """``7 of 8 flow × viewport runs verified; register@mobile stopped at step 4 on both
    sides`` ("" when everything was verified)."""
    unverified = [c for c in coverage if not c.verified]
    if not unverified and not not_verified:
        return ""
    total = len(coverage)
    done = total - len(unverified)
    text = f"{done} of {total} flow × viewport runs verified"
    named = [f"{n.flow}@{n.viewport} stopped at step {n.step} on both sides"
             for n in not_verified[:NOT_VERIFIED_NAMED]]
    if len(not_verified) > NOT_VERIFIED_NAMED:
        named.append(f"{len(not_verified) - NOT_VERIFIED_NAMED} more")
    return text + ("; " + ", ".join(named) if named else "")


def judge(run_id: str, findings: list[Finding], *, flaky: list[Flaky] | None = None,
          flows: int = 0, viewports: int = 0, duration_s: float | None = None,
          report_url: str | None = None, coverage: list[Coverage] | None = None,
          not_verified: list[NotVerified] | None = None,
          fail_on_not_verified: bool = False,
          approvals: Mapping[str, str] | None = None) -> Verdict:
    """``fail`` on any (non pre-existing) error-type finding, ``changed`` on visual ones only,
    ``pass`` on none. The summary also says how much was verified when a flow × viewport
    stopped on both sides (``not_verified``); with ``fail_on_not_verified`` that fails the run.
    ``approvals``: fingerprint → approval text of visual changes approved before
    (:mod:`diffie.approvals`); such a change is marked so and does not make the run changed.
    """
    findings = [f if f.id else f.with_id() for f in findings]
    for f in findings:
        mark = (approvals or {}).get(str(f.details.get("fingerprint", "")))
        if f.kind in CHANGE_KINDS and mark:
            f.approval = mark
    coverage = coverage or []
    not_verified = not_verified or []
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    if not_verified:
        counts["not_verified"] = len(not_verified)
    errors = [f for f in findings if f.is_error]
    changes = [f for f in findings if f.kind in CHANGE_KINDS and not f.approval]
    approved = [f for f in findings if f.kind in CHANGE_KINDS and f.approval]
    pre = [f for f in findings if f.pre_existing]
    covered = coverage_text(coverage, not_verified)
    if errors:
        status: Status = "fail"
        summary = f"{len(errors)} error finding(s): " + ", ".join(
            sorted({f.kind for f in errors}))
    elif changes:
        status = "changed"
        summary = f"{len(changes)} visual change(s) to approve"
    elif not_verified and fail_on_not_verified:
        status = "fail"
        summary = "not fully verified (fail_on_not_verified)"
    else:
        status = "pass"
        summary = "no new findings" if pre or approved else "no findings"
    if approved:
        summary += f"; {len(approved)} visual change(s) approved before"
    if pre:
        summary += f"; {len(pre)} pre-existing"
    if covered:
        summary += f"; {covered}"
    return Verdict(run_id=run_id, status=status, summary=summary, findings=findings,
                   flaky=flaky or [], counts=counts, flows=flows, viewports=viewports,
                   duration_s=duration_s, report_url=report_url, coverage=coverage,
                   not_verified=not_verified)


def internal_error_reason(run_id: str) -> str:
    """What a verdict (public: PR comments, check runs, reports) says instead of an internal
    error's text; the full reason stays in the run record (``GET /v1/runs/{id}``)."""
    return (f"Diffie hit an internal error; see the run on the server (id {run_id}). "
            "Re-run the check to try again.")


def error_verdict(run_id: str, reason: str, findings: list[Finding] | None = None) -> Verdict:
    """A run that could not be verified. ``findings`` may carry a deploy_error."""
    findings = [f if f.id else f.with_id() for f in findings or []]
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    return Verdict(run_id=run_id, status="error", summary=f"could not verify: {reason[:200]}",
                   reason=reason, findings=findings, counts=counts)
