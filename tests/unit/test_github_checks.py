"""Check-run conclusions, annotations, images and the Markdown summary (pure logic)."""

from __future__ import annotations

import time

import pytest

from diffie import links
from diffie.config import Settings
from diffie.github.checks import (
    APPROVE_ACTION,
    annotation_for,
    annotations_for,
    batches,
    conclusion_for,
    images_for,
    resolve_path,
    title_for,
)
from diffie.github.comments import MARKER
from diffie.github.summary import (
    CHECK_SUMMARY_LIMIT,
    COMMENT_LIMIT,
    comment_body,
    md_escape,
    verdict_summary,
)
from diffie.verdict import Finding, Verdict, error_verdict, judge

SETTINGS = Settings(public_url="https://diffie.example.com/", url_signing_key="k" * 32,
                    signed_url_ttl_s=3600)


@pytest.mark.parametrize("status, approved, conclusion", [
    ("pass", False, "success"),
    ("changed", False, "action_required"),
    ("changed", True, "success"),
    ("fail", False, "failure"),
    ("fail", True, "failure"),          # approving never hides errors
    ("error", False, "neutral"),
    ("superseded", False, "cancelled"),
    ("cancelled", False, "cancelled"),
])
def test_conclusion_mapping(status: str, approved: bool, conclusion: str) -> None:
    assert conclusion_for(status, approved=approved) == conclusion


def test_unknown_status_has_no_conclusion() -> None:
    with pytest.raises(ValueError):
        conclusion_for("weird")


def test_approve_action_fits_githubs_limits() -> None:
    assert len(APPROVE_ACTION["label"]) <= 20
    assert len(APPROVE_ACTION["identifier"]) <= 20
    assert len(APPROVE_ACTION["description"]) <= 40
    assert APPROVE_ACTION["identifier"] == "approve"


def test_report_url_uses_the_public_url_and_is_signed() -> None:
    url = links.fresh_report_url(SETTINGS, "abc", None)
    prefix = "https://diffie.example.com/v1/runs/abc/signed/"
    assert url.startswith(prefix) and url.endswith("/report/")
    expires, sig = url[len(prefix):].split("/")[:2]
    assert abs(int(expires) - time.time() - 3600) < 60
    links.check(SETTINGS, "abc", "report/", int(expires), sig)
    # a report URL of another host (a plugin's) is kept as it is
    assert links.fresh_report_url(SETTINGS, "abc", "https://reports.example/abc") == \
        "https://reports.example/abc"


def finding(kind: str = "console_error", **kw: object) -> Finding:
    base: dict[str, object] = {"kind": kind, "flow": "cart", "viewport": "desktop", "step": 2,
                               "message": "boom"}
    base.update(kw)
    return Finding.model_validate(base)


def test_annotation_from_explicit_path_and_line() -> None:
    ann = annotation_for(finding(details={"path": "static/cart.js", "line": 12, "column": 5,
                                          "stack": "at x (cart.js:12:5)"}))
    assert ann == {"path": "static/cart.js", "start_line": 12, "end_line": 12,
                   "annotation_level": "failure", "message": "boom",
                   "title": "console_error in cart / desktop", "start_column": 5,
                   "end_column": 5, "raw_details": "at x (cart.js:12:5)"}


def test_annotation_from_source_url_matched_against_repository_files() -> None:
    files = ["examples/shop/static/cart.js", "examples/shop/static/app.js", "README.md"]
    f = finding("page_error", details={"source_url": "http://10.0.0.2:8080/static/cart.js?v=3",
                                       "line_number": 40})
    ann = annotation_for(f, files)
    assert ann is not None
    assert (ann["path"], ann["start_line"]) == ("examples/shop/static/cart.js", 40)
    assert annotation_for(f) is None                   # no file list: a URL is not a path


def test_annotation_levels_and_non_mappable_findings() -> None:
    assert annotation_for(finding("visual_change", details={"path": "a.css", "line": 1})
                          )["annotation_level"] == "warning"  # type: ignore[index]
    assert annotation_for(finding(pre_existing=True, details={"path": "a.js", "line": 1})
                          )["annotation_level"] == "notice"  # type: ignore[index]
    assert annotation_for(finding(details={"path": "a.js"})) is None          # no line
    assert annotation_for(finding(details={"line": 3})) is None               # no file
    assert annotation_for(finding(details={"path": "a.js", "line": 0})) is None
    assert annotation_for(finding(details={"path": "../etc/passwd", "line": 1})) is None
    multi = annotation_for(finding(details={"path": "a.js", "line": 3, "end_line": 5,
                                            "column": 2}))
    assert multi is not None and "start_column" not in multi   # columns only on one line


def test_resolve_path_refuses_ambiguity() -> None:
    files = ["a/static/app.js", "b/static/app.js", "b/only.js"]
    assert resolve_path("http://h/static/app.js", files) is None
    assert resolve_path("http://h/x/only.js", files) == "b/only.js"
    assert resolve_path("./b/only.js", files) == "b/only.js"
    assert resolve_path("http://h/missing.js", files) is None


def test_batches_of_50() -> None:
    sizes = [len(b) for b in batches(list(range(120)))]
    assert sizes == [50, 50, 20]
    assert list(batches([])) == []


def test_annotations_for_a_verdict() -> None:
    v = judge("r1", [finding(message=f"m{i}", details={"path": "a.js", "line": i + 1})
                     for i in range(60)] + [finding(message="no place")])
    anns = annotations_for(v)
    assert len(anns) == 60 and {a["path"] for a in anns} == {"a.js"}


def test_images_are_diff_images_by_public_url() -> None:
    v = judge("run9", [finding("visual_change", evidence=["base-cart.png", "head-cart.png",
                                                          "diff-cart.png"]),
                       finding("console_error", evidence=["console.png"])])
    imgs = images_for(v, SETTINGS)
    assert [{**i, "image_url": ""} for i in imgs] == [
        {"alt": "visual change cart / desktop", "image_url": "", "caption": "boom"}]
    url = imgs[0]["image_url"]                     # signed: GitHub fetches it without a token
    prefix = "https://diffie.example.com/v1/runs/run9/signed/"
    assert url.startswith(prefix) and url.endswith("/artifacts/diff-cart.png")
    expires, sig = url[len(prefix):].split("/")[:2]
    links.check(SETTINGS, "run9", "artifacts/diff-cart.png", int(expires), sig)


def test_titles() -> None:
    changed = judge("r", [finding("visual_change")])
    assert title_for(changed) == "Visual changes to approve (1 finding)"
    assert title_for(changed, approved=True) == "Visual changes approved (1 finding)"
    assert title_for(judge("r", [])) == "Passed"
    assert title_for(error_verdict("r", "VM did not boot")) == "Could not verify"


SUMMARIES = [verdict_summary]


@pytest.mark.parametrize("summarize", SUMMARIES)
def test_summary_respects_the_check_run_limit(summarize) -> None:
    huge = [finding(message="x" * 5000 + str(i), flow=f"flow{i}") for i in range(3000)]
    v = judge("r", huge)
    text = summarize(v, report_url="https://d/r")
    assert len(text) <= CHECK_SUMMARY_LIMIT
    assert len(text.encode()) <= CHECK_SUMMARY_LIMIT + 10
    assert "more finding(s)" in text and "https://d/r" in text
    small = summarize(v, report_url="https://d/r", limit=2000)
    assert len(small) <= 2000


@pytest.mark.parametrize("summarize", SUMMARIES)
def test_summary_lists_errors_before_visual_changes(summarize) -> None:
    v = judge("r", [finding("visual_change", message="moved"), finding(message="crash")])
    text = summarize(v, report_url="https://d/r")
    assert text.index("crash") < text.index("moved")


@pytest.mark.parametrize("summarize", SUMMARIES)
def test_untrusted_text_is_escaped(summarize) -> None:
    evil = f"a|b <script>x</script> {MARKER} @octocat [link](http://x) `code`\nnext"
    v = judge("r", [finding(message=evil)])
    text = summarize(v, report_url="https://d/r")
    assert "<script>" not in text and MARKER not in text
    assert "@octocat" not in text and "\nnext" not in text
    assert "a\\|b" in text
    assert md_escape("x" * 500, 10) == "x" * 9 + "\u2026"


def test_comment_body_starts_with_the_marker_and_fits() -> None:
    v = judge("r", [finding(message="y" * 10_000 + str(i)) for i in range(100)])
    body = comment_body(MARKER, v, report_url="https://d/r", top=10)
    assert body.startswith(MARKER + "\n")
    assert len(body) <= COMMENT_LIMIT
    assert body.count("| \u274c |") == 10
    assert "90 more finding(s)" in body
    assert comment_body(MARKER, v, report_url="u", top=3).count("| \u274c |") == 3


def test_error_verdict_summary_names_the_reason() -> None:
    text = verdict_summary(error_verdict("r", "deploy failed: npm ci exited 1"),
                           report_url="https://d/r")
    assert "deploy failed: npm ci exited 1" in text
    assert "Diffie: error" in text


@pytest.mark.parametrize("summarize", SUMMARIES)
def test_approved_summary(summarize) -> None:
    v = judge("r", [finding("visual_change")])
    assert "approved" in summarize(v, report_url="u", approved=True, max_rows=5)
    assert "approved" not in summarize(v, report_url="u", max_rows=5)


def test_verdict_model_has_what_github_needs() -> None:
    v = Verdict(run_id="r", status="pass", summary="no findings")
    assert conclusion_for(v.status) == "success"
