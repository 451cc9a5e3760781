"""Log findings: new console errors, page errors, failed requests and failed steps in head."""

from __future__ import annotations

from diffie.capture import Capture, ConsoleEntry, PageError, RequestIssue, Screenshot, StepResult
from diffie.compare.logs import log_findings, normalise, url_path

STEPS = [
    StepResult(index=0, action="goto", description="goto /products", ok=True, duration_ms=300),
    StepResult(index=1, action="click", description="click #buy", ok=True, duration_ms=40),
    StepResult(index=2, action="expect_text", description="expect_text .cart contains '1'", ok=True),
]


def cap(side: str = "head", port: int = 9001, **kw) -> Capture:
    kw.setdefault("steps", [s.model_copy() for s in STEPS])
    return Capture(flow="checkout", viewport="desktop", side=side, trace=f"trace-{side}.zip",  # type: ignore[arg-type]
                   screenshots=[Screenshot(name="cart", step=2, artifact=f"{side}-cart.png",
                                           width=10, height=10)], **kw)


def console(text: str, port: int, **kw) -> ConsoleEntry:
    return ConsoleEntry(type=kw.pop("type", "error"), text=text,
                        url=f"http://127.0.0.1:{port}/static/app.js", **kw)


def test_normalise_ignores_host_port_and_line_column():
    a = normalise("TypeError: x at http://127.0.0.1:8001/static/app.js:12:5")
    b = normalise("TypeError: x at http://10.1.2.3:9123/static/app.js:14:9")
    assert a == b == "TypeError: x at /static/app.js:L"
    assert (normalise("order 1700000000123 for localhost:8000")
            == normalise("order 1700000099999 for localhost:9"))
    assert normalise("HTTP 404") != normalise("HTTP 500")       # small numbers still matter
    assert url_path("http://h:1/api/cart?id=3") == "/api/cart?id=3"


def test_console_error_present_on_both_sides_is_not_new():
    base = cap("base", console=[console("Uncaught boom at http://127.0.0.1:8001/a.js:3:4", 8001, line=3)])
    head = cap("head", console=[console("Uncaught boom at http://127.0.0.1:9001/a.js:7:1", 9001, line=7)])
    assert log_findings(base, head) == []


def test_new_console_error_explains_itself():
    base = cap("base", console=[console("hello", 8001, type="log")])
    head = cap("head", console=[console("cart total is NaN", 9001, line=12, column=5, step=1),
                                console("cart total is NaN", 9001, line=12, column=5, step=1),
                                console("just a warning", 9001, type="warning")])
    [f] = log_findings(base, head)
    assert f.kind == "console_error"
    assert f.message == "console error: cart total is NaN at /static/app.js:12:5 during step 1 (click #buy)"
    assert f.step == 1 and f.step_description == "click #buy"
    assert f.details["url"] == "http://127.0.0.1:9001/static/app.js"
    assert f.details["line"] == 12 and f.details["column"] == 5 and f.details["count"] == 2
    assert f.evidence == ["trace-head.zip", "head-cart.png"]
    assert f.is_error


def test_new_page_error_carries_stack_and_source():
    stack = "TypeError: x is undefined\n    at add (http://127.0.0.1:9001/static/app.js:12:5)"
    head = cap(page_errors=[PageError(name="TypeError", message="x is undefined", stack=stack,
                                      url="http://127.0.0.1:9001/static/app.js", line=12, column=5,
                                      step=1)])
    [f] = log_findings(cap("base", 8001), head)
    assert f.kind == "page_error"
    assert f.message == "TypeError: x is undefined at /static/app.js:12:5 during step 1 (click #buy)"
    assert f.details["stack"] == stack and f.details["name"] == "TypeError"


def test_page_error_on_both_sides_with_other_host_and_line_is_pre_existing_noise():
    base = cap("base", page_errors=[PageError(name="Error", message="boom at http://127.0.0.1:8001/x.js:1:2")])
    head = cap("head", page_errors=[PageError(name="Error", message="boom at http://127.0.0.1:9001/x.js:5:2")])
    assert log_findings(base, head) == []


def test_failed_requests_match_on_method_path_status_not_host():
    base = cap("base", requests=[
        RequestIssue(method="GET", url="http://127.0.0.1:8001/favicon.ico", status=404)])
    head = cap("head", requests=[
        RequestIssue(method="GET", url="http://127.0.0.1:9001/favicon.ico", status=404),
        RequestIssue(method="get", url="http://127.0.0.1:9001/api/cart", status=500,
                     resource_type="fetch", step=1),
        RequestIssue(method="POST", url="http://127.0.0.1:9001/api/cart", failure="net::ERR_CONNECTION_RESET",
                     step=1),
        RequestIssue(method="GET", url="http://127.0.0.1:9001/img/a.png", failure="net::ERR_ABORTED"),
    ])
    found = log_findings(base, head)
    assert [f.kind for f in found] == ["request_failed", "request_failed"]
    assert found[0].message == "GET /api/cart [fetch] returned HTTP 500 during step 1 (click #buy)"
    assert found[0].details["method"] == "GET" and found[0].details["status"] == 500
    assert found[0].details["url"] == "http://127.0.0.1:9001/api/cart"
    assert found[1].message == "POST /api/cart failed (net::ERR_CONNECTION_RESET) during step 1 (click #buy)"
    # same path, different status: a new failure
    base2 = cap("base", requests=[RequestIssue(method="GET", url="http://h:1/api/cart", status=404)])
    head2 = cap("head", requests=[RequestIssue(method="GET", url="http://h:2/api/cart", status=500)])
    assert len(log_findings(base2, head2)) == 1


def test_failed_to_load_resource_echo_is_covered_by_the_request_finding():
    url = "http://127.0.0.1:9001/static/missing.js"
    echo = "Failed to load resource: the server responded with a status of 404 (Not Found)"
    head = cap(requests=[RequestIssue(method="GET", url=url, status=404)],
               console=[ConsoleEntry(type="error", text=echo, url=url)])
    assert [f.kind for f in log_findings(cap("base"), head)] == ["request_failed"]


def test_step_and_assertion_failures_and_pre_existing():
    head_steps = [s.model_copy() for s in STEPS]
    head_steps[1] = head_steps[1].model_copy(
        update={"ok": False, "error": "Timeout 10000ms exceeded waiting for #buy"})
    head = cap(steps=head_steps[:2], completed=False)
    [f] = log_findings(cap("base"), head)
    assert f.kind == "step_failed" and f.step == 1 and not f.pre_existing and f.is_error
    assert f.message.startswith("step 1 (click #buy) failed: Timeout 10000ms exceeded")
    assert f.evidence[0] == "trace-head.zip"

    head_steps = [s.model_copy() for s in STEPS]
    head_steps[2] = head_steps[2].model_copy(update={"ok": False, "error": "expected '1', got '0'"})
    base_steps = [s.model_copy() for s in STEPS]
    [f] = log_findings(cap("base"), cap(steps=head_steps))
    assert f.kind == "assertion_failed" and not f.pre_existing
    base_steps[2] = base_steps[2].model_copy(update={"ok": False, "error": "expected '1', got '2'"})
    # failed on both sides: not a finding (a not_verified entry, see test_coverage.py)
    assert log_findings(cap("base", steps=base_steps), cap(steps=head_steps)) == []


def test_missing_base_capture_makes_everything_new():
    head = cap(console=[console("boom", 9001)])
    assert [f.kind for f in log_findings(None, head)] == ["console_error"]


def test_a_step_that_failed_on_both_attempts_says_so():
    head_steps = [s.model_copy() for s in STEPS]
    head_steps[1] = head_steps[1].model_copy(update={
        "ok": False, "error": "click #buy did not complete within 5000 ms: still waiting for the "
        "server to answer POST /api/buy", "pending_requests": ["POST http://h:1/api/buy"]})
    head = cap(steps=head_steps[:2], completed=False, attempts=2,
               first_attempt="step 1 timed out waiting for the server (POST http://h:1/api/buy)")
    [f] = log_findings(cap("base"), head)
    assert f.kind == "step_failed" and f.is_error
    assert "still waiting for the server to answer POST /api/buy" in f.message
    assert "the flow was run 2 times" in f.message
    assert f.details["attempts"] == 2 and f.details["pending_requests"] == ["POST http://h:1/api/buy"]
