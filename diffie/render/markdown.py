"""The verdict as GitHub-flavoured Markdown: a check run's summary, a PR comment, a CLI print.

A title line, a counts line, the causes when one explains several findings (the same element
change seen in ten screenshots is one line), and one table row per finding (errors first), cut cleanly under
``limit`` (GitHub caps a check run summary at 65,535 characters) with an "N more findings in
the report" line. Every cell is one line; app text is made inert (:func:`diffie.gfm.inert`) so
it cannot break the table, open a link, mention a user, reference an issue or inject HTML.
"""

from __future__ import annotations

from diffie.compact import shared_causes
from diffie.gfm import inert
from diffie.verdict import Finding, Verdict

ICON = {"pass": "✅", "changed": "🟡", "fail": "❌", "error": "⚠️"}
CELL = 240                     # characters of a message cell
TABLE_HEAD = "| | kind | flow | viewport | step | message |\n|---|---|---|---|---|---|\n"


def size(text: str) -> int:
    """Length as GitHub may count it: UTF-8 bytes (never less than characters or UTF-16 units)."""
    return len(text.encode("utf-8"))


def cell(value: object, limit: int = CELL) -> str:
    """One inert table cell: whitespace (newlines included) folded, clipped to ``limit``."""
    return inert(value, limit)


def _url(url: str) -> str:
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _rank(f: Finding) -> int:
    return 0 if f.is_error else (2 if f.pre_existing else 1)


def _row(f: Finding) -> str:
    icon = "❌" if f.is_error else ("⚪" if f.pre_existing else "🟡")
    step = "" if f.step is None else str(f.step)
    if f.step_description:
        step += f" · {f.step_description}"
    kind = f.kind + (" (pre-existing)" if f.pre_existing else "")
    return (f"| {icon} | {cell(kind, 40)} | {cell(f.flow or '—', 60)} | {cell(f.viewport or '—', 30)}"
            f" | {cell(step, 80)} | {cell(f.message)} |\n")


def _counts(verdict: Verdict) -> str:
    errors = sum(1 for f in verdict.findings if f.is_error)
    pre = sum(1 for f in verdict.findings if f.pre_existing)
    changes = len(verdict.findings) - errors - pre
    parts = [f"**{errors}** error(s)", f"**{changes}** visual change(s)"]
    if pre:
        parts.append(f"{pre} pre-existing")
    if verdict.not_verified:
        parts.append(f"**{len(verdict.not_verified)}** flow run(s) not verified")
    if verdict.flaky:
        parts.append(f"{len(verdict.flaky)} flaky result(s) not counted")
    if verdict.flows:
        parts.append(f"{verdict.flows} flow(s) × {verdict.viewports} viewport(s)")
    if verdict.duration_s is not None:
        parts.append(f"{verdict.duration_s:.1f} s")
    return " · ".join(parts)


NOT_VERIFIED_LINES = 5
CAUSE_LINES = 5


def _causes(verdict: Verdict) -> str:
    """The findings grouped by cause (:func:`diffie.compact.shared_causes`): what a reviewer
    reads first."""
    groups = shared_causes([f.model_dump(mode="json") for f in verdict.findings])
    if not groups:
        return ""
    lines = []
    for g in groups[:CAUSE_LINES]:
        icon = "⚪" if g.pre_existing else ("🟡" if g.kind == "visual_change" else "❌")
        where = ", ".join(g.where[:3]) + (", …" if g.occurrences > len(g.where[:3]) else "")
        lines.append(f"- {icon} {cell(g.message, 300)} ({g.occurrences}× · {cell(where, 120)})\n")
    if len(groups) > CAUSE_LINES:
        lines.append(f"- … and {len(groups) - CAUSE_LINES} more cause(s)\n")
    return "**Causes**:\n" + "".join(lines) + "\n"


def _not_verified(verdict: Verdict) -> str:
    """Flow runs that stopped at the same step on both sides: what the pass does not cover."""
    if not verdict.not_verified:
        return ""
    lines = [f"- ⚪ {cell(n.message, 300)}\n" for n in verdict.not_verified[:NOT_VERIFIED_LINES]]
    rest = len(verdict.not_verified) - NOT_VERIFIED_LINES
    if rest > 0:
        lines.append(f"- … and {rest} more\n")
    return "**Not verified** (stopped at the same step on base and head):\n" + "".join(lines) + "\n"


def verdict_markdown(verdict: Verdict, *, report_url: str | None, limit: int = 65_000,
                     max_findings: int | None = None) -> str:
    """The verdict in Markdown, at most ``limit`` characters (UTF-8 bytes, to be safe).

    ``max_findings`` shows only the first findings (errors first), e.g. for a PR comment; the
    rest are counted in the closing "N more findings in the report" line.
    """
    title = f"## {ICON.get(verdict.status, '')} Diffie: {verdict.status} — {cell(verdict.summary, 300)}\n\n"
    head = title + _counts(verdict)
    link = f"[full report]({_url(report_url)})" if report_url else ""
    head += (f" · {link}" if link else "") + "\n\n"
    if verdict.reason:
        head += f"> {cell(verdict.reason, 1000)}\n\n"
    if verdict.approved:
        head += "Visual changes **approved**.\n\n"
    head += _not_verified(verdict)
    head += _causes(verdict)

    findings = sorted(verdict.findings, key=_rank)      # stable: errors, changes, pre-existing
    if not findings:
        body = head + ("No findings: base and head behave and look the same.\n"
                       if verdict.status == "pass" and not verdict.not_verified else "")
        return _fit(body, limit)

    def footer(rest: int) -> str:
        if not rest:
            return ""
        where = f"the {link}" if link else "the report"
        return f"\n_{rest} more finding(s) in {where}._\n"

    out = head + TABLE_HEAD
    shown = 0
    cap = len(findings) if max_findings is None else max(0, max_findings)
    budget_footer = size(footer(len(findings)))          # the longest footer it can need
    if size(out) + budget_footer > limit:                # not even the table fits
        return _fit(head + footer(len(findings)).lstrip("\n"), limit)
    for f in findings[:cap]:
        row = _row(f)
        if size(out) + size(row) + budget_footer > limit:
            break
        out += row
        shown += 1
    if shown == 0:
        out = head
    return _fit(out + footer(len(findings) - shown), limit)


def _fit(text: str, limit: int) -> str:
    """Last resort for absurd limits: cut at a line boundary under ``limit``."""
    if size(text) <= limit:
        return text
    lines = text.splitlines(keepends=True)
    out = ""
    for line in lines:
        if size(out) + size(line) > limit:
            break
        out += line
    if not out:                                           # a single overlong line
        out = text.encode("utf-8")[:limit].decode("utf-8", "ignore")
    return out
