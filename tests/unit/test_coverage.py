"""Coverage: a step that fails on both sides is a not_verified entry, and the summary, the
report header, JUnit and CTRF all say how much of the spec was verified."""

from __future__ import annotations

import json
from pathlib import Path

from diffie.artifacts import ArtifactDir
from diffie.capture import Capture, StepResult
from diffie.compare.coverage import coverage_of
from diffie.compare.findings import compare_runs
from diffie.pipeline import write_outputs
from diffie.spec import parse_spec
from diffie.verdict import Finding, judge

SPEC = parse_spec("""
flows:
  - name: register
    steps:
      - goto: /register
      - fill: {selector: "#user", value: alice}
      - click: "#submit"
      - expect_text: {selector: h1, text: Welcome}
      - click: "#logout"
  - name: home
    steps:
      - goto: /
""", file=".diffie.yml")
ACTIONS = ["goto", "fill", "click", "expect_text", "click"]


def capture(flow: str, viewport: str, side: str, ran: int, fail_at: int | None = None,
            error: str = "timed out") -> Capture:
    steps = [StepResult(index=i, action=ACTIONS[i] if flow == "register" else "goto",
                        description=f"step {i}", ok=i != fail_at,
                        error=error if i == fail_at else None, line=10 + i)
             for i in range(ran)]
    return Capture(flow=flow, viewport=viewport, side=side, steps=steps,  # type: ignore[arg-type]
                   completed=fail_at is None, trace=f"trace-{side}-{flow}-{viewport}.zip")


def sides(head_fail: int | None, base_fail: int | None) -> tuple[list[Capture], list[Capture]]:
    def side(name: str, fail: int | None) -> list[Capture]:
        caps = [capture("register", "desktop", name, 5)]
        caps.append(capture("register", "mobile", name, 5 if fail is None else fail + 1, fail,
                            error="username already taken"))
        caps += [capture("home", vp, name, 1) for vp in ("desktop", "mobile")]
        return caps
    return side("base", base_fail), side("head", head_fail)


def test_everything_ran_is_fully_verified() -> None:
    base, head = sides(None, None)
    coverage, not_verified = coverage_of(SPEC, base, head)
    assert [(c.flow, c.viewport, c.steps, c.verified) for c in coverage] == [
        ("register", "desktop", 5, True), ("register", "mobile", 5, True),
        ("home", "desktop", 1, True), ("home", "mobile", 1, True)]
    assert not_verified == []
    verdict = judge("r", [], coverage=coverage, not_verified=not_verified)
    assert (verdict.status, verdict.summary) == ("pass", "no findings")


def test_a_step_failing_on_both_sides_is_not_verified_not_a_finding(tmp_path: Path) -> None:
    base, head = sides(3, 3)
    out = ArtifactDir(tmp_path).ensure()
    findings, _ = compare_runs(base, head, out)
    assert findings == []                                  # nothing the change caused
    coverage, not_verified = coverage_of(SPEC, base, head)
    [nv] = not_verified
    assert (nv.flow, nv.viewport, nv.step, nv.steps_not_run) == ("register", "mobile", 3, 1)
    assert "username already taken" in nv.message and nv.details["spec_line"] == 13
    assert nv.evidence == ["trace-head-register-mobile.zip"]
    assert [c.verified for c in coverage] == [True, False, True, True]
    verdict = judge("r", findings, coverage=coverage, not_verified=not_verified)
    assert verdict.status == "pass"
    assert verdict.summary == ("no findings; 3 of 4 flow × viewport runs verified; "
                               "register@mobile stopped at step 3 on both sides")
    assert verdict.counts == {"not_verified": 1}

    strict = judge("r", findings, coverage=coverage, not_verified=not_verified,
                   fail_on_not_verified=True)
    assert strict.status == "fail" and "not fully verified" in strict.summary

    # the report header, JUnit and CTRF agree with the summary
    captures = {"base": base, "head": head}
    write_outputs(verdict, captures, out, title="t", meta={})
    html = out.path("index.html").read_text()
    assert "0 finding(s)" in html and "1 flow run(s) not verified" in html
    assert "stopped at step 3" in html
    junit = out.path("junit.xml").read_text()
    assert 'skipped="1"' in junit and "not verified: register@mobile" in junit
    ctrf = json.loads(out.path("ctrf.json").read_text())
    statuses = {t["name"]: t["status"] for t in ctrf["results"]["tests"]}
    assert statuses["register [mobile]"] == "skipped"


def test_a_step_failing_on_head_only_is_a_finding_and_the_summary_counts_coverage(
        tmp_path: Path) -> None:
    base, head = sides(3, None)
    findings, _ = compare_runs(base, head, ArtifactDir(tmp_path).ensure())
    assert [f.kind for f in findings] == ["assertion_failed"]
    coverage, not_verified = coverage_of(SPEC, base, head)
    assert not_verified == []
    verdict = judge("r", findings, coverage=coverage, not_verified=not_verified)
    assert verdict.status == "fail"
    assert verdict.summary.endswith("3 of 4 flow × viewport runs verified")


def test_pre_existing_findings_are_counted_in_the_summary() -> None:
    pre = Finding(kind="console_error", flow="home", viewport="desktop", message="x",
                  pre_existing=True)
    verdict = judge("r", [pre])
    assert (verdict.status, verdict.summary) == ("pass", "no new findings; 1 pre-existing")


def test_a_missing_capture_is_not_verified() -> None:
    base, head = sides(None, None)
    coverage, _ = coverage_of(SPEC, base, head[:-1])
    assert coverage[-1].head_ran is None and not coverage[-1].verified
