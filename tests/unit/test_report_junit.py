"""JUnit XML: one testcase per flow×viewport, a failure for error findings."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from diffie.capture import Capture
from diffie.render.junit import render_junit
from diffie.verdict import Finding, error_verdict, judge


def cap(flow: str, viewport: str, side: str = "head", **kw) -> Capture:
    return Capture(flow=flow, viewport=viewport, side=side, duration_ms=1500, **kw)  # type: ignore[arg-type]


def test_one_testcase_per_flow_and_viewport_with_failures_for_errors():
    findings = [
        Finding(kind="page_error", flow="cart", viewport="mobile", message="TypeError \x00 <x> & y",
                details={"stack": "at app.js:1:2"}),
        Finding(kind="request_failed", flow="cart", viewport="mobile", message="GET /api 500"),
        Finding(kind="visual_change", flow="home", viewport="desktop", message="screenshot changed",
                evidence=["diff-home.png"]),
        Finding(kind="step_failed", flow="home", viewport="mobile", message="click failed",
                pre_existing=True),
    ]
    captures = {"base": [cap(f, v, "base") for f in ("home", "cart") for v in ("desktop", "mobile")],
                "head": [cap(f, v, trace=f"trace-{f}-{v}.zip") for f in ("home", "cart")
                         for v in ("desktop", "mobile")]}
    xml = render_junit(judge("r9", findings), captures)
    root = ET.fromstring(xml.encode())                     # well-formed despite \x00 in app text
    assert root.tag == "testsuites" and root.get("tests") == "4" and root.get("failures") == "1"
    cases = {tc.get("name"): tc for tc in root.iter("testcase")}
    assert set(cases) == {"home [desktop]", "home [mobile]", "cart [desktop]", "cart [mobile]"}
    [failure] = cases["cart [mobile]"].findall("failure")
    assert failure.get("type") == "page_error,request_failed"
    assert failure.get("message", "").startswith("TypeError \ufffd <x> & y (+1 more)")
    assert "GET /api 500" in (failure.text or "") and "at app.js:1:2" in (failure.text or "")
    assert cases["home [desktop]"].find("failure") is None            # visual change: not a failure
    assert "screenshot changed" in (cases["home [desktop]"].findtext("system-out") or "")
    assert cases["home [mobile]"].find("failure") is None             # pre-existing: not blamed
    assert cases["cart [desktop]"].get("time") == "1.500"
    out = cases["cart [desktop]"].findtext("system-out") or ""
    assert "playwright show-trace trace-cart-desktop.zip" in out


def test_error_verdict_is_one_error_testcase():
    v = error_verdict("r0", "deploy failed", [Finding(kind="deploy_error", message="exit 1: SyntaxError")])
    root = ET.fromstring(render_junit(v, {}).encode())
    [tc] = root.iter("testcase")
    error = tc.find("error")
    assert error is not None and error.get("message") == "deploy failed"
    assert "SyntaxError" in (tc.findtext("error") or "")
    assert root.get("errors") == "1"
