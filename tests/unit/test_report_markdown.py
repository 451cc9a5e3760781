"""Markdown for check runs and PR comments: a table that never breaks, cut under the limit."""

from __future__ import annotations

from diffie.render.markdown import size, verdict_markdown
from diffie.verdict import Finding, Flaky, error_verdict, judge


def finding(i: int, kind: str = "console_error", message: str | None = None, **kw) -> Finding:
    return Finding(kind=kind, flow=f"flow{i % 3}", viewport="desktop", step=i % 5,  # type: ignore[arg-type]
                   step_description="click #buy", message=message or f"console error number {i}",
                   details={"key": str(i)}, **kw)


def table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("| ") and "| kind |" not in line]


def test_title_summary_table_and_link():
    v = judge("r1", [finding(1, "visual_change", "screenshot 'home' changed"), finding(2)],
              flaky=[Flaky(flow="a", viewport="b", screenshot="c", pixels=3)], flows=3, viewports=2)
    md = verdict_markdown(v, report_url="https://diffie.example/runs/r1/report")
    first = md.splitlines()[0]
    assert first.startswith("## ❌ Diffie: fail — ")
    assert "[full report](https://diffie.example/runs/r1/report)" in md
    assert "1 flaky result(s) not counted" in md and "3 flow(s) × 2 viewport(s)" in md
    rows = table_rows(md)
    assert len(rows) == 2
    assert rows[0].startswith("| ❌ | console\\_error | flow2 | desktop | 2 · click #\u200bbuy |")
    assert rows[1].startswith("| 🟡 | visual\\_change |")              # errors listed first


def test_cells_escape_pipes_newlines_markup_links_and_mentions():
    evil = "a | b\nc\r\n<img src=x onerror=alert(1)> [click](http://evil) @admin `code`"
    md = verdict_markdown(judge("r", [finding(1, message=evil)]), report_url=None)
    [row] = table_rows(md)
    assert row.count(" | ") == 5 and row.endswith(" |")             # six cells, one line
    assert "a \\| b c" in row
    assert "<img" not in row and "&lt;img" in row
    assert "[click]" not in row and "\\[click\\]" in row
    assert "@admin" not in row and "@\u200badmin" in row       # no mention (nor via &#64;)
    assert "`code`" not in row


def test_truncated_cleanly_under_the_limit():
    findings = [finding(i, message="x" * 200) for i in range(500)]
    v = judge("r", findings)
    md = verdict_markdown(v, report_url="https://r/1", limit=10_000)
    assert size(md) <= 10_000
    rows = table_rows(md)
    assert 10 < len(rows) < 500
    assert md.rstrip().endswith(f"_{500 - len(rows)} more finding(s) in the [full report](https://r/1)._")
    assert all(r.endswith(" |") for r in rows)                       # no half rows

    full = verdict_markdown(v, report_url=None)                      # default limit: 65,000
    assert 60_000 < size(full) <= 65_000 and "more finding(s) in the report._" in full
    few = verdict_markdown(judge("r", findings[:100]), report_url=None)
    assert len(table_rows(few)) == 100 and "more finding" not in few


def test_max_findings_and_tiny_limits():
    v = judge("r", [finding(i) for i in range(10)])
    md = verdict_markdown(v, report_url=None, max_findings=3)
    assert len(table_rows(md)) == 3 and "_7 more finding(s) in the report._" in md
    tiny = verdict_markdown(v, report_url=None, limit=120)
    assert size(tiny) <= 120 and tiny.startswith("## ❌ Diffie: fail")


def test_pass_and_error_verdicts():
    md = verdict_markdown(judge("r", []), report_url=None)
    assert md.startswith("## ✅ Diffie: pass") and "No findings" in md and "|" not in md
    md = verdict_markdown(error_verdict("r", "VM did not boot\nin 60 s"), report_url=None)
    assert md.startswith("## ⚠️ Diffie: error") and "> VM did not boot in 60 s" in md


def test_causes_lead_when_one_explains_several_findings():
    cause = "body > div.banner padding 6px → 10px; 9 element(s) below moved down 8 px @admin"
    shots = [Finding(kind="visual_change", flow=flow, viewport=vp, message=f"{flow} changed",
                     details={"cause_key": "k1", "cause": cause})
             for flow in ("home", "cart") for vp in ("desktop", "mobile")]
    md = verdict_markdown(judge("r", [*shots, finding(1)]), report_url=None)
    causes = md.split("**Causes**:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert causes[0].startswith("- ❌ console error number 1 (1×")
    assert causes[1].startswith("- 🟡 4 screenshot(s) changed: body &gt; div.banner padding")
    assert "(4× · home @\u200b desktop, home @\u200b mobile, cart @\u200b desktop, …)" \
        in causes[1]
    assert "@admin" not in causes[1]                         # inert like every cell
    assert len(table_rows(md)) == 5                           # every finding still listed
    single = verdict_markdown(judge("r", [finding(1), finding(2)]), report_url=None)
    assert "**Causes**" not in single                         # nothing to group
