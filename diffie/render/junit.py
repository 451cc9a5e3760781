"""The verdict as JUnit XML: one testcase per flow×viewport, a failure for error findings.

Visual changes (which need approval, not a fix) and pre-existing failures are listed in the
testcase's ``system-out``; a run that could not be verified is one ``error`` testcase.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from diffie.capture import Capture
from diffie.render.cases import Case, cases, clean, finding_text
from diffie.verdict import Verdict

MAX_BODY = 20_000          # characters of a failure / system-out body


def _seconds(ms: float) -> str:
    return f"{max(ms, 0.0) / 1000:.3f}"


def _testcase(suite: ET.Element, case: Case) -> tuple[int, int, int]:
    """Append a testcase; returns (failures, errors, skipped) it adds."""
    tc = ET.SubElement(suite, "testcase", classname=clean(f"diffie.{case.flow}", 200),
                       name=clean(case.name, 300), time=_seconds(case.duration_ms))
    errors = case.errors
    if errors:
        first = errors[0]
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        failure = ET.SubElement(tc, "failure", message=clean(first.message + more, 1000),
                                type=",".join(sorted({f.kind for f in errors})))
        failure.text = clean("\n\n".join(finding_text(f) for f in errors), MAX_BODY)
    elif case.head is not None and case.head.error:
        err = ET.SubElement(tc, "error", message=clean(case.head.error, 1000), type="infrastructure")
        err.text = clean(case.head.error, MAX_BODY)
    elif case.head is None:
        ET.SubElement(tc, "skipped", message="not run on head")
    elif case.not_verified is not None:
        ET.SubElement(tc, "skipped", message=clean("not verified: " + case.not_verified.message,
                                                   1000))
    notes = [finding_text(f) for f in case.findings if not f.is_error]
    notes += [(f"[flaky] step {fl.step} failed on head and passed on its second render: "
               f"{fl.reason}" if fl.step is not None else
               f"[flaky] screenshot {fl.screenshot!r}: {fl.pixels} px differed between two renders"
               f" of head") + f"; evidence: {', '.join(fl.evidence)}" for fl in case.flaky]
    if case.head is not None and case.head.trace:
        notes.append(f"trace: {case.head.trace} (playwright show-trace {case.head.trace})")
    if notes:
        ET.SubElement(tc, "system-out").text = clean("\n\n".join(notes), MAX_BODY)
    failed = 1 if errors else 0
    errored = 1 if not errors and case.head is not None and case.head.error else 0
    skipped = not errors and not errored and (case.head is None or case.not_verified is not None)
    return failed, errored, 1 if skipped else 0


def render_junit(verdict: Verdict, captures: dict[str, list[Capture]]) -> str:
    """JUnit XML (the common Jenkins/GitLab/GitHub-actions dialect) as a string."""
    all_cases, loose = cases(verdict, captures)
    suite = ET.Element("testsuite", name=clean(f"diffie {verdict.run_id}", 200))
    props = ET.SubElement(suite, "properties")
    for name, value in (("verdict", verdict.status), ("summary", verdict.summary),
                        ("report_url", verdict.report_url or "")):
        ET.SubElement(props, "property", name=name, value=clean(value, 1000))
    failures = errors = skipped = 0
    for case in all_cases:
        f, e, s = _testcase(suite, case)
        failures, errors, skipped = failures + f, errors + e, skipped + s
    tests = len(all_cases)
    if loose or verdict.status == "error":
        tests += 1
        tc = ET.SubElement(suite, "testcase", classname="diffie", name="run")
        bad = [f for f in loose if f.is_error]
        if verdict.status == "error":
            el = ET.SubElement(tc, "error", message=clean(verdict.reason or verdict.summary, 1000),
                               type="error")
            errors += 1
        elif bad:
            el = ET.SubElement(tc, "failure", message=clean(bad[0].message, 1000),
                               type=",".join(sorted({f.kind for f in bad})))
            failures += 1
        else:
            el = ET.SubElement(tc, "system-out")
        if loose:
            el.text = clean("\n\n".join(finding_text(f) for f in loose), MAX_BODY)
    total_ms = sum(c.duration_ms for c in all_cases)
    time = f"{verdict.duration_s:.3f}" if verdict.duration_s is not None else _seconds(total_ms)
    for k, v in (("tests", tests), ("failures", failures), ("errors", errors),
                 ("skipped", skipped), ("time", time)):
        suite.set(k, str(v))
    root = ET.Element("testsuites", name="diffie", tests=str(tests), failures=str(failures),
                      errors=str(errors), skipped=str(skipped), time=time)
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
