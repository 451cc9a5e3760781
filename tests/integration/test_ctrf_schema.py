"""CTRF output validates against the upstream CTRF JSON Schema (tests/fixtures/ctrf)."""

from __future__ import annotations

import datetime as dt
import json

import jsonschema
import pytest

from diffie.capture import Capture, StepResult
from diffie.render.ctrf import render_ctrf
from diffie.verdict import Finding, Flaky, Verdict, error_verdict, judge
from tests.paths import FIXTURES as SHARED_FIXTURES

FIXTURES = SHARED_FIXTURES / "ctrf"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    path = FIXTURES / "ctrf.schema.json"
    if not path.is_file():
        pytest.fail(f"CTRF schema fixture missing: {path}")
    schema = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def _captures() -> dict[str, list[Capture]]:
    steps = [StepResult(index=0, action="goto", description="goto /", ok=True, duration_ms=100),
             StepResult(index=1, action="click", description="click #buy", ok=False, error="timeout")]
    head = [Capture(flow=f, viewport=v, side="head", steps=steps, trace=f"trace-{f}-{v}.zip",
                    duration_ms=1234.5) for f in ("home", "cart") for v in ("desktop", "mobile")]
    base = [c.model_copy(update={"side": "base", "trace": None}) for c in head]
    return {"base": base, "head": head}


def _verdicts() -> list[Verdict]:
    fail = judge("run-1", [
        Finding(kind="step_failed", flow="cart", viewport="mobile", step=1, message="click failed \x07",
                evidence=["trace-cart-mobile.zip", "head-cart.png"]),
        Finding(kind="visual_change", flow="home", viewport="desktop", message="changed",
                evidence=["diff-home.png", "base-home.png", "head-home.png"]),
        Finding(kind="deploy_error", message="a finding tied to no flow"),
    ], flaky=[Flaky(flow="home", viewport="mobile", screenshot="home", pixels=4, evidence=["f.png"])],
        flows=2, viewports=2, duration_s=12.5)
    changed = judge("run-2", [Finding(kind="size_change", flow="home", viewport="mobile", message="taller")])
    return [fail, changed, judge("run-3", []), error_verdict("run-4", "VM did not boot")]


def test_upstream_examples_validate(validator):
    for name in ("example.minimal.json", "example.comprehensive.json"):
        validator.validate(json.loads((FIXTURES / name).read_text(encoding="utf-8")))


@pytest.mark.parametrize("index", range(4))
def test_ctrf_output_validates(validator, index):
    verdict = _verdicts()[index]
    captures = {} if verdict.status == "error" else _captures()
    doc = render_ctrf(verdict, captures, now=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    errors = sorted(validator.iter_errors(json.loads(json.dumps(doc))), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    summary = doc["results"]["summary"]
    tests = doc["results"]["tests"]
    assert summary["tests"] == len(tests)
    assert sum(summary[s] for s in ("passed", "failed", "skipped", "pending", "other")) == len(tests)
    assert doc["timestamp"] == "2026-01-02T03:04:05Z" and doc["runId"] == verdict.run_id


def test_ctrf_statuses_follow_the_verdict():
    docs = [render_ctrf(v, {} if v.status == "error" else _captures()) for v in _verdicts()]
    by_name = {t["name"]: t for t in docs[0]["results"]["tests"]}
    assert by_name["cart [mobile]"]["status"] == "failed"
    assert by_name["cart [mobile]"]["attachments"][0] == {
        "name": "trace-cart-mobile.zip", "contentType": "application/zip", "path": "trace-cart-mobile.zip"}
    home = by_name["home [desktop]"]
    assert home["status"] == "other" and home["rawStatus"] == "changed"
    assert by_name["home [mobile]"]["status"] == "passed"
    assert by_name["home [mobile]"]["extra"]["flaky_screenshots"][0]["pixels"] == 4
    assert by_name["diffie run"]["status"] == "failed"          # the deploy_error tied to no flow
    assert by_name["cart [mobile]"]["steps"][1] == {"name": "1: click #buy", "status": "failed",
                                                    "extra": {"duration_ms": 0.0, "error": "timeout"}}
    assert {t["status"] for t in docs[2]["results"]["tests"]} == {"passed"}
    [run] = docs[3]["results"]["tests"]
    assert run["status"] == "failed" and run["message"] == "VM did not boot"
    assert docs[3]["results"]["environment"]["healthy"] is False
