"""The compact verdict (diffie.compact): findings grouped by cause, stable group ids, bounded
messages, pages by cursor."""

from __future__ import annotations

from typing import Any

import pytest

from diffie.compact import MESSAGE_CHARS, compact, decode_cursor, encode_cursor, groups_of


def f(kind: str, message: str, flow: str, viewport: str = "desktop", fid: str = "",
      **extra: Any) -> dict[str, Any]:
    return {"id": fid or f"f-{flow}-{viewport}-{kind}", "kind": kind, "message": message,
            "flow": flow, "viewport": viewport, **extra}


SIGNIN_500 = [
    f("assertion_failed", "step 5 (expect_text h1) failed: it was 'Something went wrong'",
      "signin"),
    f("assertion_failed", "step 1 (expect_text h1) failed: it was 'Something went wrong'",
      "account", "mobile"),
    f("request_failed", "GET /account [document] returned HTTP 500 during step 3 (click #go)",
      "signin"),
    f("request_failed", "GET /account [document] returned HTTP 500 during step 0 (goto /account)",
      "account"),
]


def test_one_cause_seen_in_several_flows_is_one_group() -> None:
    groups = groups_of(SIGNIN_500)
    assert [(g.kind, g.occurrences) for g in groups] == \
        [("assertion_failed", 2), ("request_failed", 2)]
    assert groups[0].where == ["signin @ desktop", "account @ mobile"]
    assert groups[1].finding_ids == ["f-signin-desktop-request_failed",
                                     "f-account-desktop-request_failed"]
    assert groups_of(list(reversed(SIGNIN_500)))[0].id in {g.id for g in groups}   # stable


def test_visual_changes_are_one_group_after_errors_and_pre_existing_last() -> None:
    findings = [f("visual_change", f"screenshot 'home' changed: {n} pixels", "home", fid=f"v{n}")
                for n in range(10)]
    findings += [f("console_error", "TypeError: x", "cart"),
                 f("console_error", "old", "cart", pre_existing=True)]
    groups = groups_of(findings)
    assert [g.kind for g in groups] == ["console_error", "visual_change", "console_error"]
    assert groups[1].occurrences == 10 and groups[1].message.startswith("10 screenshot(s)")
    assert groups[2].pre_existing


def test_messages_are_bounded_and_pages_follow_the_cursor() -> None:
    findings = [f("console_error", f"error {i}: " + "x" * 2000, f"flow{i}") for i in range(25)]
    snap: dict[str, Any] = {"id": "r1", "status": "done", "phase": "done", "reason": None,
                            "verdict": {"status": "fail", "summary": "25 errors",
                                        "findings": findings}}
    first = compact(snap, report="/r/index.html")
    assert first.total_groups == 25 and 1 <= len(first.groups) < 10     # within the budget
    assert all(len(g.message) <= MESSAGE_CHARS for g in first.groups)
    pages = [first]
    while pages[-1].next_cursor:
        pages.append(compact(snap, report=None, cursor=pages[-1].next_cursor))
    assert all(len(p.model_dump_json()) < 4096 for p in pages)
    ids = [g.id for p in pages for g in p.groups]
    assert len(ids) == len(set(ids)) == 25
    assert first.counts == {"console_error": 25}
    short = [f("console_error", f"e{i}", f"flow{i}") for i in range(25)]
    small = compact({**snap, "verdict": {**snap["verdict"], "findings": short}}, report=None)
    assert len(small.groups) == 10 and small.next_cursor


def test_a_run_without_a_verdict_says_to_wait_and_bad_cursors_are_refused() -> None:
    running = compact({"id": "r2", "status": "running", "phase": "browse head 2/8",
                       "reason": None, "verdict": None}, report=None)
    assert running.status == "running" and "call wait again" in running.next_steps
    assert decode_cursor(encode_cursor(30)) == 30
    for bad in ("zz", encode_cursor(-1), "eDox"):
        with pytest.raises(ValueError, match="not a cursor"):
            decode_cursor(bad)
