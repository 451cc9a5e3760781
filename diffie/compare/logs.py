"""Compare what the browser logged on base and on head: console errors, uncaught exceptions,
failed requests and failed steps.

Base and head run on different hosts and ports, and a change moves code around, so entries are
matched on a *normalised* key: URL origins, line:column numbers, long numbers (ids, ports,
timestamps), UUIDs and hashes are replaced by placeholders. An entry of head whose key does not
occur in base is new, and becomes one finding (repeats are counted in ``details["count"]``).

Every finding explains itself: the message names what failed, where (source URL path, line,
column) and during which step; ``details`` carries the full URL, stack, status, failure text and
the step; ``evidence`` names the artifacts to look at (trace, screenshots).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from diffie.capture import MAX_TEXT, Capture, ConsoleEntry, PageError, RequestIssue, StepResult
from diffie.text import one_line
from diffie.verdict import Finding, FindingKind

MAX_MESSAGE = 300          # characters of app text quoted in a finding's message
MAX_STACK = 2000           # characters of a stack kept in details

# Request failures that are cancellations by the page itself (a navigation interrupting
# in-flight requests), not server or network faults: they come and go with timing.
IGNORED_FAILURES: frozenset[str] = frozenset({"net::ERR_ABORTED"})

_ORIGIN = re.compile(r"\b(?:https?|wss?)://[^/\s'\"<>()]+", re.IGNORECASE)
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b")
_LOCALHOST = re.compile(r"\blocalhost(?::\d+)?\b", re.IGNORECASE)
_FILE_LINECOL = re.compile(r"(\.[A-Za-z0-9]{1,8}):\d+(?::\d+)?")
_LINECOL = re.compile(r":\d+:\d+")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)
_HEX = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{12,}\b", re.IGNORECASE)
_LONGNUM = re.compile(r"\d{4,}")
_WS = re.compile(r"\s+")
_FAILED_TO_LOAD = "failed to load resource"


def normalise(text: str) -> str:
    """A host- and position-independent key for an app message.

    >>> normalise("TypeError at http://10.0.0.5:8001/static/app.js:12:5")
    'TypeError at /static/app.js:L'
    """
    t = _ORIGIN.sub("", text)
    t = _IPV4.sub("<host>", t)
    t = _LOCALHOST.sub("<host>", t)
    t = _FILE_LINECOL.sub(r"\1:L", t)
    t = _LINECOL.sub(":L", t)
    t = _UUID.sub("<uuid>", t)
    t = _HEX.sub("<hex>", t)
    t = _LONGNUM.sub("#", t)
    return _WS.sub(" ", t).strip()


def url_path(url: str | None) -> str:
    """The host-independent part of a URL: path plus query (``/api/cart?id=3``)."""
    if not url:
        return ""
    if url.startswith("data:"):
        return url[:40]
    try:
        parts = urlsplit(url)
    except ValueError:
        return url[:MAX_MESSAGE]
    if not parts.scheme and not parts.netloc:
        return url
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def clip(text: str | None, limit: int = MAX_MESSAGE) -> str:
    """One line of at most ``limit`` characters."""
    return one_line(text, limit)


def _raw(text: str | None) -> str | None:
    """App text kept in details: whole, up to the capture bound (the browser bounds it too)."""
    return None if text is None else text[:MAX_TEXT]


def _step(cap: Capture, index: int | None) -> StepResult | None:
    if index is None:
        return None
    return next((s for s in cap.steps if s.index == index), None)


def _during(cap: Capture, index: int | None) -> str:
    st = _step(cap, index)
    if st is None:
        return "" if index is None else f" during step {index}"
    return f" during step {index} ({clip(st.description, 80)})"


def _where(url: str | None, line: int | None, column: int | None) -> str:
    if not url:
        return ""
    loc = url_path(url)
    if line is not None:
        loc += f":{line}" + (f":{column}" if column is not None else "")
    return f" at {loc}"


def evidence_of(cap: Capture, step: int | None) -> list[str]:
    """The trace, the page when ``step`` failed (if it did), then the first screenshot taken at
    or after ``step`` (else the last one)."""
    ev: list[str] = []
    if cap.trace:
        ev.append(cap.trace)
    failed = _step(cap, step)
    if failed is not None and failed.screenshot:     # the page when that step failed
        ev.append(failed.screenshot)
    shots = sorted(cap.screenshots, key=lambda s: s.step)
    after = [s for s in shots if step is None or s.step >= step]
    pick = after[0] if after else (shots[-1] if shots else None)
    if pick is not None:
        ev.append(pick.artifact)
    return ev


def _step_fields(cap: Capture, index: int | None) -> dict[str, Any]:
    st = _step(cap, index)
    return {"step": index, "step_description": st.description if st else None}


# -- keys ---------------------------------------------------------------------------------------

def console_key(entry: ConsoleEntry) -> str:
    return normalise(entry.text)


def page_error_key(err: PageError) -> str:
    return normalise(f"{err.name or 'Error'}: {err.message}")


def request_key(req: RequestIssue) -> str:
    outcome = str(req.status) if req.status is not None else f"failed {normalise(req.failure or '')}"
    return f"{req.method.upper()} {normalise(url_path(req.url))} {outcome}"


def _grouped(items: Iterable[Any], key: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


# -- findings -----------------------------------------------------------------------------------

def console_findings(base: Capture | None, head: Capture) -> list[Finding]:
    """New ``console.error`` messages in head.

    Chromium echoes every failed resource load as a console error ("Failed to load resource:
    ... 404"); when the failed request itself was captured, the request finding covers it.
    """
    base_keys = {console_key(e) for e in (base.console if base else []) if e.type == "error"}
    failed_paths = {url_path(r.url) for r in head.requests}
    errors = [e for e in head.console if e.type == "error"]
    findings: list[Finding] = []
    for key, group in _grouped(errors, console_key).items():
        if key in base_keys:
            continue
        first: ConsoleEntry = group[0]
        if first.text.lower().startswith(_FAILED_TO_LOAD) and url_path(first.url) in failed_paths:
            continue
        msg = (f"console error: {clip(first.text)}{_where(first.url, first.line, first.column)}"
               f"{_during(head, first.step)}")
        findings.append(Finding(
            kind="console_error", flow=head.flow, viewport=head.viewport, message=msg,
            evidence=evidence_of(head, first.step),
            details={"key": key[:500], "text": _raw(first.text), "url": _raw(first.url), "line": first.line,
                     "column": first.column, "count": len(group),
                     **_step_fields(head, first.step)},
            **_step_fields(head, first.step),
        ))
    return findings


def page_error_findings(base: Capture | None, head: Capture) -> list[Finding]:
    """New uncaught exceptions in head, with their stack."""
    base_keys = {page_error_key(e) for e in (base.page_errors if base else [])}
    findings: list[Finding] = []
    for key, group in _grouped(head.page_errors, page_error_key).items():
        if key in base_keys:
            continue
        first: PageError = group[0]
        name = first.name or "Error"
        text = first.message if first.message.startswith(name) else f"{name}: {first.message}"
        msg = f"{clip(text)}{_where(first.url, first.line, first.column)}{_during(head, first.step)}"
        findings.append(Finding(
            kind="page_error", flow=head.flow, viewport=head.viewport, message=msg,
            evidence=evidence_of(head, first.step),
            details={"key": key[:500], "name": first.name, "message": _raw(first.message),
                     "url": _raw(first.url),
                     "line": first.line, "column": first.column,
                     "stack": (first.stack or "")[:MAX_STACK] or None, "count": len(group),
                     **_step_fields(head, first.step)},
            **_step_fields(head, first.step),
        ))
    return findings


def blocked_key(req: RequestIssue) -> str:
    """Blocked requests are matched on their whole URL minus volatile numbers: where the page
    tried to go is the point (another port is another service)."""
    return f"{req.method.upper()} {_LONGNUM.sub('#', req.url[:500])}"


def blocked_findings(base: Capture | None, head: Capture) -> list[Finding]:
    """Requests the browser's confinement kept from leaving the app's origin. Always reported
    (a page that reaches for another origin is news); ``pre_existing`` when base did too."""
    base_keys = {blocked_key(r) for r in (base.requests if base else []) if r.blocked}
    findings: list[Finding] = []
    for key, group in _grouped([r for r in head.requests if r.blocked], blocked_key).items():
        first: RequestIssue = group[0]
        pre = key in base_keys
        msg = (f"{first.method.upper()} {clip(first.url, 200)} [{first.resource_type or 'request'}] "
               f"was blocked: the browser may only reach the app's origin and the spec's "
               f"allowed_origins{_during(head, first.step)}" + (" (also on base)" if pre else ""))
        findings.append(Finding(
            kind="blocked_request", flow=head.flow, viewport=head.viewport, message=msg,
            pre_existing=pre, evidence=evidence_of(head, first.step),
            details={"key": key, "method": first.method.upper(), "url": _raw(first.url),
                     "resource_type": first.resource_type, "count": len(group),
                     **_step_fields(head, first.step)},
            **_step_fields(head, first.step),
        ))
    return findings


def request_findings(base: Capture | None, head: Capture) -> list[Finding]:
    """New failed requests and HTTP >= 400 responses in head (method + path + status)."""
    base_keys = {request_key(r) for r in (base.requests if base else [])}
    relevant = [r for r in head.requests if not r.blocked and (
        r.status is not None or r.failure not in IGNORED_FAILURES)]
    findings: list[Finding] = []
    for key, group in _grouped(relevant, request_key).items():
        if key in base_keys:
            continue
        first: RequestIssue = group[0]
        what = (f"returned HTTP {first.status}" if first.status is not None
                else f"failed ({clip(first.failure, 120) or 'no response'})")
        kind = f" [{first.resource_type}]" if first.resource_type else ""
        msg = (f"{first.method.upper()} {clip(url_path(first.url), 160)}{kind} {what}"
               f"{_during(head, first.step)}")
        findings.append(Finding(
            kind="request_failed", flow=head.flow, viewport=head.viewport, message=msg,
            evidence=evidence_of(head, first.step),
            details={"key": key[:500], "method": first.method.upper(), "url": _raw(first.url),
                     "path": url_path(first.url), "status": first.status,
                     "failure": _raw(first.failure), "resource_type": first.resource_type,
                     "count": len(group), **_step_fields(head, first.step),
                     **_answer(first)},
            **_step_fields(head, first.step),
        ))
    return findings


def _answer(issue: RequestIssue) -> dict[str, Any]:
    """The server's answer to a server error (headers, start of the body), when recorded."""
    out: dict[str, Any] = {}
    if issue.response_headers:
        out["response_headers"] = issue.response_headers
    if issue.response_body:
        out["response_body"] = issue.response_body
    return out


def failed_on_both(base: Capture | None, head: Capture) -> tuple[StepResult, StepResult] | None:
    """(base step, head step) when head's failed step also failed on base (same index and
    action): neither side got past it, so it and the steps after it were never verified."""
    st = head.failed_step()
    if st is None or base is None:
        return None
    base_st = _step(base, st.index)
    if base_st is not None and not base_st.ok and base_st.action == st.action:
        return base_st, st
    return None


def step_findings(base: Capture | None, head: Capture) -> list[Finding]:
    """The failed step of head: ``assertion_failed`` for expect_* steps, ``step_failed`` for
    actions. A step that failed on base too is not a finding: it is a ``not_verified`` entry
    of the verdict (:mod:`diffie.compare.coverage`)."""
    findings: list[Finding] = []
    both = failed_on_both(base, head)
    for st in head.steps:
        if st.ok or (both is not None and st.index == both[1].index):
            continue
        base_st = _step(base, st.index) if base else None
        pre = base_st is not None and not base_st.ok and base_st.action == st.action
        kind: FindingKind = "assertion_failed" if st.action.startswith("expect_") else "step_failed"
        msg = f"step {st.index} ({clip(st.description, 120)}) failed: {clip(st.error) or 'no reason given'}"
        if pre:
            msg += " (also fails on base)"
        elif not head.completed:
            msg += "; the flow stopped here"
        if head.attempts > 1:
            msg += f" (the flow was run {head.attempts} times: {clip(head.first_attempt, 160)})"
        findings.append(Finding(
            kind=kind, flow=head.flow, viewport=head.viewport, step=st.index,
            step_description=st.description, message=msg, pre_existing=pre,
            evidence=evidence_of(head, st.index),
            details={"key": f"{st.index} {st.action} {normalise(st.description)}",
                     "action": st.action, "description": st.description, "error": _raw(st.error),
                     "spec_line": st.line, "duration_ms": round(st.duration_ms, 1),
                     "base_ok": None if base_st is None else base_st.ok,
                     "pending_requests": st.pending_requests, "attempts": head.attempts},
        ))
    return findings


def log_findings(base: Capture | None, head: Capture) -> list[Finding]:
    """Every log-type finding of one flow×viewport: steps first, then errors and requests."""
    return (step_findings(base, head) + page_error_findings(base, head)
            + console_findings(base, head) + request_findings(base, head)
            + blocked_findings(base, head))
