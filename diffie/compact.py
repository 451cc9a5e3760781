"""The compact verdict a coding agent reads (MCP ``result``, ``GET /v1/runs/{id}?view=compact``):
status, summary, counts, and the findings grouped by cause, a page of groups at a time.

A group is the findings one cause explains: the same kind and the same message once what
differs between flows is taken out (the step's number, the step a failed request happened
during); visual changes by their cause in DOM terms (:mod:`diffie.compare.explain`: the same
element resized by the same amount, the same text change), those without one together.
A group's id is a hash of that key (stable across runs of the same change); its
message is its first finding's, bounded to :data:`MESSAGE_CHARS`; ``finding_ids`` name the
findings (``finding`` shows one in full).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from diffie.text import one_line

PAGE = 10
BUDGET = 3800              # bytes of JSON a page stays within (an agent's context is precious)
MESSAGE_CHARS = 300
WHERE_MAX = 5
IDS_MAX = 10

NEXT_STEPS = {
    "pass": "Nothing to do: no difference a user would see.",
    "changed": "Look at each visual group (report, or 'finding' with include_image): if the "
               "change is intended, ask a human to approve it; otherwise fix it and verify again.",
    "fail": "Fix what each group names (use 'finding' for the stack, requests and server log), "
            "then verify again.",
    "error": "Diffie could not verify this change: read 'reason'; it is not a verdict on the "
             "change. Retry, or tell the user.",
}


class Group(BaseModel):
    """Findings with one cause."""

    id: str
    kind: str
    message: str = Field(max_length=MESSAGE_CHARS)
    occurrences: int
    where: list[str] = Field(description="flow @ viewport where it was seen (first few)")
    finding_ids: list[str]
    pre_existing: bool = Field(description="it also happens on base: not the change's doing")


class CompactVerdict(BaseModel):
    """A run's verdict, compact: what an agent needs to decide what to do next."""

    run_id: str
    status: str = Field(description="pass | changed | fail | error, or the run's state "
                                    "(queued, running) while it has no verdict")
    summary: str
    reason: str | None = None
    counts: dict[str, int] = Field(description="findings by kind")
    groups: list[Group]
    total_groups: int
    next_cursor: str | None = Field(default=None, description="pass as cursor for the next page")
    report: str | None = Field(default=None, description="the HTML report (URL or path)")
    next_steps: str


_STEP = re.compile(r"\bstep \d+\b")
_DURING = re.compile(r" during step # \(.*\)$")


def cause_key(finding: dict[str, Any]) -> tuple[str, str]:
    kind = str(finding.get("kind", ""))
    if kind == "visual_change":               # the DOM cause, when the element maps show one
        return kind, str((finding.get("details") or {}).get("cause_key") or "")
    message = _STEP.sub("step #", str(finding.get("message", "")))
    return kind, _DURING.sub("", message)[:400]


def groups_of(findings: list[dict[str, Any]], *, ids_max: int | None = IDS_MAX) -> list[Group]:
    """Findings grouped by cause: the change's own first (errors before visual), then
    pre-existing; within those, the most frequent first."""
    keyed: dict[tuple[str, str, bool], list[dict[str, Any]]] = {}
    for finding in findings:
        kind, text = cause_key(finding)
        keyed.setdefault((kind, text, bool(finding.get("pre_existing"))), []).append(finding)
    out = []
    for (kind, text, pre), members in keyed.items():
        where: list[str] = []
        for f in members:
            at = " @ ".join(str(x) for x in (f.get("flow"), f.get("viewport")) if x)
            if at and at not in where:
                where.append(at)
        first = str(members[0].get("message", ""))
        cause = (members[0].get("details") or {}).get("cause")
        if kind == "visual_change" and cause:
            message = f"{len(members)} screenshot(s) changed: {cause}"
        elif kind == "visual_change" and len(members) > 1:
            message = f"{len(members)} screenshot(s) changed; first: {first}"
        else:
            message = first
        digest = hashlib.sha256(f"{kind}|{text}|{pre}".encode()).hexdigest()[:12]
        out.append(Group(id=f"g-{digest}", kind=kind, message=one_line(message, MESSAGE_CHARS),
                         occurrences=len(members), where=where[:WHERE_MAX],
                         finding_ids=[str(f.get("id", "")) for f in members][:ids_max],
                         pre_existing=pre))
    out.sort(key=lambda g: (g.pre_existing, g.kind == "visual_change", -g.occurrences, g.kind))
    return out


def shared_causes(findings: list[dict[str, Any]]) -> list[Group]:
    """:func:`groups_of`, when a cause explains more than one finding (else []): what the report
    and the PR comment lead with. Each group names all its findings (the report approves a
    group by them)."""
    groups = groups_of(findings, ids_max=None)
    return groups if len(groups) < len(findings) else []


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The offset a cursor stands for; ValueError for one this module did not make."""
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        offset = int(value)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"not a cursor of this run's findings: {cursor[:40]!r}") from None
    if kind != "o" or offset < 0:
        raise ValueError(f"not a cursor of this run's findings: {cursor[:40]!r}")
    return offset


def compact(snap: dict[str, Any], *, report: str | None, cursor: str | None = None,
            page: int = PAGE, budget: int = BUDGET) -> CompactVerdict:
    """The compact form of a run snapshot (:func:`diffie.submit.snapshot`'s shape: ``id``,
    ``status``, ``reason``, ``verdict``): at most ``page`` groups, fewer when more would
    make its JSON longer than ``budget`` bytes. Raises ValueError for a bad cursor."""
    verdict: dict[str, Any] = snap.get("verdict") or {}
    status = str(verdict.get("status") or snap.get("verdict_status") or snap.get("status"))
    findings = list(verdict.get("findings") or [])
    groups = groups_of(findings)
    offset = decode_cursor(cursor)
    reason = verdict.get("reason") or snap.get("reason")
    out = CompactVerdict(
        run_id=str(snap.get("id") or verdict.get("run_id")), status=status,
        summary=one_line(verdict.get("summary") or snap.get("phase") or "", 500),
        reason=one_line(reason, 1000) if reason else None,
        counts=dict(Counter(str(f.get("kind")) for f in findings)), groups=[],
        total_groups=len(groups), next_cursor=encode_cursor(offset), report=report,
        next_steps=NEXT_STEPS.get(status, "The run has no verdict yet: call wait again."))
    size = len(out.model_dump_json())
    for group in groups[offset:offset + page]:       # at least one, then while within budget
        grown = size + len(group.model_dump_json()) + 1
        if out.groups and grown > budget:
            break
        out.groups.append(group)
        size = grown
    end = offset + len(out.groups)
    out.next_cursor = encode_cursor(end) if end < len(groups) else None
    return out
