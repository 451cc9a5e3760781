"""Markdown for GitHub: the check run's summary and the PR comment's body.

Uses ``diffie.render.markdown.verdict_markdown(verdict, *, report_url, limit)`` when the report
package offers it, else a small table of its own. Text from the app under test is made inert
(:func:`diffie.gfm.inert`: no tables broken by ``|``, no HTML, no links, no @-mentions, no
issue references) and everything respects GitHub's limits. An internal error's text (an
exception, a traceback) never reaches GitHub: :func:`public_verdict` puts a generic reason
with the run's id in its place (the full reason stays in the run record).
"""

from __future__ import annotations

import re

from diffie.gfm import inert
from diffie.render.markdown import verdict_markdown
from diffie.verdict import Verdict, internal_error_reason

CHECK_SUMMARY_LIMIT = 65_535     # check run output.summary (and output.text)
COMMENT_LIMIT = 65_536           # issue comment body

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


def verdict_summary(verdict: Verdict, *, report_url: str, limit: int = CHECK_SUMMARY_LIMIT,
                    approved: bool = False, max_rows: int | None = None) -> str:
    """A Markdown summary of the verdict (headline, counts, findings table, report link),
    never longer than ``limit`` characters (:func:`diffie.render.markdown.verdict_markdown`)."""
    if approved and not verdict.approved:
        verdict = verdict.model_copy(update={"approved": True})
    verdict = public_verdict(verdict)
    text = verdict_markdown(verdict, report_url=report_url, limit=limit, max_findings=max_rows)
    return _clip(text, limit)


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

