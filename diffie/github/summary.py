"""Markdown for GitHub: the check run's summary and the PR comment's body.

Uses ``diffie.report.markdown.verdict_markdown(verdict, *, report_url, limit)`` when the report
package offers it, else a small table of its own. Text from the app under test is made inert
(:func:`diffie.gfm.inert`: no tables broken by ``|``, no HTML, no links, no @-mentions, no
issue references) and everything respects GitHub's limits. An internal error's text (an
exception, a traceback) never reaches GitHub: :func:`public_verdict` puts a generic reason
with the run's id in its place (the full reason stays in the run record).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

from diffie.gfm import inert
from diffie.verdict import CHANGE_KINDS, Finding, Verdict, internal_error_reason

CHECK_SUMMARY_LIMIT = 65_535     # check run output.summary (and output.text)
COMMENT_LIMIT = 65_536           # issue comment body

ICONS = {"pass": "\u2705", "changed": "\U0001f7e1", "fail": "\u274c", "error": "\u26a0\ufe0f",
         "approved": "\u2705", "cancelled": "\u23f9\ufe0f"}

_INTERNAL = re.compile(r"^\s*internal error\b|Traceback \(most recent call last\)", re.I)


def md_escape(text: str, limit: int = 300) -> str:
    """One table cell / line of untrusted text: inert, single line, at most ``limit`` chars."""
    return inert(text, limit)


def public_verdict(verdict: Verdict) -> Verdict:
    """``verdict`` fit for a public pull request: an internal error's reason (exception text,
    a traceback) replaced by :func:`~diffie.verdict.internal_error_reason`."""
    if _INTERNAL.search(verdict.reason or "") or _INTERNAL.search(verdict.summary or ""):
        reason = internal_error_reason(verdict.run_id)
        return verdict.model_copy(update={"reason": reason,
                                          "summary": f"could not verify: {reason}"})
    return verdict


def status_label(verdict: Verdict, *, approved: bool = False) -> str:
    if verdict.status == "changed" and approved:
        return "approved"
    return verdict.status


def _report_markdown() -> Callable[..., str] | None:
    try:
        mod = importlib.import_module("diffie.report.markdown")
    except ImportError:
        return None
    fn = getattr(mod, "verdict_markdown", None)
    return fn if callable(fn) else None


def _finding_row(f: Finding) -> str:
    icon = "\u2139\ufe0f" if f.pre_existing else ("\U0001f7e1" if f.kind in CHANGE_KINDS
                                                  else "\u274c")
    cells = [icon, f"`{f.kind}`", md_escape(f.flow or "", 60), md_escape(f.viewport or "", 40),
             "" if f.step is None else str(f.step), md_escape(f.message)]
    return "| " + " | ".join(cells) + " |"


def _order(findings: list[Finding]) -> list[Finding]:
    """Errors first, then visual changes, then pre-existing ones."""
    def rank(f: Finding) -> int:
        if f.pre_existing:
            return 2
        return 1 if f.kind in CHANGE_KINDS else 0
    return sorted(findings, key=rank)


def verdict_summary(verdict: Verdict, *, report_url: str, limit: int = CHECK_SUMMARY_LIMIT,
                    approved: bool = False, max_rows: int | None = None) -> str:
    """A Markdown summary of the verdict (headline, counts, findings table, report link),
    never longer than ``limit`` characters: the report package's ``verdict_markdown`` when
    present, else :func:`own_summary`."""
    if approved and not verdict.approved:
        verdict = verdict.model_copy(update={"approved": True})
    verdict = public_verdict(verdict)
    fn = _report_markdown()
    if fn is not None:
        try:
            text = str(fn(verdict, report_url=report_url, limit=limit, max_findings=max_rows))
        except TypeError:       # an older signature without max_findings
            text = (str(fn(verdict, report_url=report_url, limit=limit))
                    if max_rows is None else "")
        if text:
            return _clip(text, limit)
    return own_summary(verdict, report_url=report_url, limit=limit, approved=approved,
                       max_rows=max_rows)


def own_summary(verdict: Verdict, *, report_url: str, limit: int = CHECK_SUMMARY_LIMIT,
                approved: bool = False, max_rows: int | None = None) -> str:
    """Diffie's own small Markdown summary (used when diffie.report.markdown is absent)."""
    label = status_label(verdict, approved=approved or verdict.approved)
    lines = [f"### {ICONS.get(label, '')} Diffie: {label}",
             "",
             md_escape(verdict.summary, 500) + (" (approved)" if label == "approved" else "")]
    if verdict.reason and verdict.status == "error":
        lines += ["", "Reason: " + md_escape(verdict.reason, 1000)]
    facts = []
    if verdict.flows:
        facts.append(f"{verdict.flows} flow(s)")
    if verdict.viewports:
        facts.append(f"{verdict.viewports} viewport(s)")
    if verdict.duration_s is not None:
        facts.append(f"{verdict.duration_s:.1f} s")
    if verdict.flaky:
        facts.append(f"{len(verdict.flaky)} flaky screenshot(s) ignored")
    if facts:
        lines += ["", " \u00b7 ".join(facts)]
    footer = f"\n\n[Full report]({report_url})"
    head = "\n".join(lines)
    findings = _order(verdict.findings)
    if findings:
        table = ["", "", "| | Kind | Flow | Viewport | Step | Finding |",
                 "|---|---|---|---|---|---|"]
        body = head + "\n".join(table)
        shown = 0
        rows_cap = len(findings) if max_rows is None else min(max_rows, len(findings))
        reserve = len(footer) + 120
        for f in findings[:rows_cap]:
            row = "\n" + _finding_row(f)
            if _size(body) + _size(row) + reserve > limit:
                break
            body += row
            shown += 1
        if shown < len(findings):
            body += f"\n\n{len(findings) - shown} more finding(s) in the full report."
        head = body
    return _clip(head + footer, limit)


def _size(text: str) -> int:
    """Length counted in UTF-8 bytes: never less than GitHub's character count."""
    return len(text.encode("utf-8"))


def _clip(text: str, limit: int) -> str:
    if _size(text) <= limit:
        return text
    tail = "\n\n\u2026 (truncated)"
    cut = text.encode("utf-8")[: limit - _size(tail)].decode("utf-8", "ignore")
    return cut + tail


def comment_body(marker: str, verdict: Verdict, *, report_url: str, approved: bool = False,
                 top: int = 10) -> str:
    """The PR comment: the hidden marker, the verdict, the top findings and the report link."""
    body = verdict_summary(verdict, report_url=report_url, approved=approved, max_rows=top,
                           limit=COMMENT_LIMIT - len(marker) - 1)
    return f"{marker}\n{body}"

