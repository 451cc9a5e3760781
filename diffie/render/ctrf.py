"""The verdict as CTRF (Common Test Report Format, https://ctrf.io) JSON: one test per
flow×viewport. ``failed`` on error findings, ``other`` (rawStatus ``changed``) on visual
changes only, ``skipped`` when head never ran it, else ``passed``. A run that could not be
verified adds a failed test ``diffie run`` (rawStatus ``error``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from importlib import metadata
from typing import Any

from diffie.capture import Capture
from diffie.render.cases import Case, cases, clean, finding_text
from diffie.verdict import Finding, Verdict

SPEC_VERSION = "1.0.0"
_CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".zip": "application/zip",
                  ".json": "application/json", ".html": "text/html", ".txt": "text/plain"}


def _version() -> str:
    try:
        return metadata.version("diffie")
    except metadata.PackageNotFoundError:
        return "0"


def _attachment(name: str) -> dict[str, str]:
    ext = name[name.rfind("."):].lower() if "." in name else ""
    return {"name": clean(name, 300), "contentType": _CONTENT_TYPES.get(ext, "application/octet-stream"),
            "path": clean(name, 300)}


def _finding(f: Finding) -> dict[str, Any]:
    return {"id": f.id, "kind": f.kind, "step": f.step, "message": clean(f.message, 2000),
            "pre_existing": f.pre_existing, "evidence": f.evidence}


def _test(case: Case) -> dict[str, Any]:
    errors, changes = case.errors, case.changes
    if errors:
        status, raw = "failed", "fail"
    elif case.head is None:
        status, raw = "skipped", "not-run"
    elif case.infra_error:
        status, raw = "failed", "error"
    elif changes:
        status, raw = "other", "changed"
    elif case.not_verified is not None:
        status, raw = "skipped", "not-verified"
    else:
        status, raw = "passed", "pass"
    test: dict[str, Any] = {
        "name": clean(case.name, 300), "status": status, "rawStatus": raw,
        "duration": int(round(case.duration_ms)), "suite": [clean(case.flow, 200)],
        "type": "e2e", "browser": "chromium",
        "tags": sorted({f.kind for f in case.findings}),
        "labels": {"flow": clean(case.flow, 200), "viewport": clean(case.viewport, 100)},
    }
    shown = errors or changes
    if shown:
        more = f" (+{len(shown) - 1} more)" if len(shown) > 1 else ""
        test["message"] = clean(shown[0].message + more, 2000)
        test["trace"] = clean("\n\n".join(finding_text(f) for f in case.findings), 20_000)
    elif case.infra_error:
        test["message"] = clean(case.infra_error, 2000)
    elif case.not_verified is not None:
        test["message"] = clean("not verified: " + case.not_verified.message, 2000)
    if case.head is not None and case.head.steps:
        test["steps"] = [{"name": clean(f"{s.index}: {s.description}", 300),
                          "status": "passed" if s.ok else "failed",
                          "extra": {"duration_ms": round(s.duration_ms, 1),
                                    **({"error": clean(s.error, 2000)} if s.error else {})}}
                         for s in case.head.steps]
    evidence: list[str] = []
    for f in case.findings:
        evidence += [n for n in f.evidence if n not in evidence]
    if case.head is not None and case.head.trace and case.head.trace not in evidence:
        evidence.append(case.head.trace)
    if evidence:
        test["attachments"] = [_attachment(n) for n in evidence]
    extra: dict[str, Any] = {"findings": [_finding(f) for f in case.findings]}
    if case.flaky:
        extra["flaky_screenshots"] = [fl.model_dump() for fl in case.flaky]
    test["extra"] = extra
    return test


def render_ctrf(verdict: Verdict, captures: dict[str, list[Capture]], *,
                now: dt.datetime | None = None) -> dict[str, Any]:
    """A CTRF document (a JSON-ready dict) valid against the CTRF JSON Schema."""
    all_cases, loose = cases(verdict, captures)
    tests = [_test(c) for c in all_cases]
    if loose or verdict.status == "error":
        bad = [f for f in loose if f.is_error]
        run: dict[str, Any] = {"name": "diffie run", "status": "passed", "rawStatus": verdict.status,
                               "duration": 0, "type": "e2e",
                               "extra": {"findings": [_finding(f) for f in loose]}}
        if verdict.status == "error" or bad:
            run["status"] = "failed"
            run["message"] = clean(verdict.reason or (bad[0].message if bad else verdict.summary), 2000)
        if loose:
            run["trace"] = clean("\n\n".join(finding_text(f) for f in loose), 20_000)
        tests.append(run)
    stop = now or dt.datetime.now(dt.UTC)
    duration_ms = int(round((verdict.duration_s or 0.0) * 1000))
    stop_ms = int(stop.timestamp() * 1000)
    summary: dict[str, Any] = {"tests": len(tests), "start": stop_ms - duration_ms, "stop": stop_ms,
                               "duration": duration_ms}
    for status in ("passed", "failed", "skipped", "pending", "other"):
        summary[status] = sum(1 for t in tests if t["status"] == status)
    summary["flaky"] = 0          # CTRF's "flaky" means "passed on retry"; Diffie never retries
    summary["suites"] = len({c.flow for c in all_cases})
    return {
        "reportFormat": "CTRF",
        "specVersion": SPEC_VERSION,
        "reportId": str(uuid.uuid4()),
        "runId": clean(verdict.run_id, 200) or "unknown",
        "timestamp": stop.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "generatedBy": "diffie",
        "results": {
            "tool": {"name": "diffie", "version": _version()},
            "summary": summary,
            "tests": tests,
            "environment": {"reportName": clean(f"diffie {verdict.run_id}", 200),
                            "healthy": verdict.status != "error"},
            "extra": {"verdict": verdict.status, "summary": clean(verdict.summary, 1000),
                      "counts": verdict.counts, "report_url": verdict.report_url,
                      "flaky": [fl.model_dump() for fl in verdict.flaky]},
        },
    }
