"""The HTML report: self-contained folder, escaped app text, images with region boxes."""

from __future__ import annotations

import base64
import hashlib
import re
from html import unescape
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from diffie.artifacts import ArtifactDir
from diffie.capture import Capture, ConsoleEntry, PageError, RequestIssue, Screenshot, StepResult
from diffie.compare.findings import compare_runs
from diffie.render.html import render_report
from diffie.verdict import Finding, Verdict, error_verdict, judge

XSS = "<script>alert(1)</script>"


def _png(out: ArtifactDir, name: str, box: tuple[int, int, int, int] | None) -> None:
    im = Image.new("RGBA", (120, 80), "white")
    if box:
        ImageDraw.Draw(im).rectangle(box, fill="navy")
    im.save(out.path(name))


def build(out: ArtifactDir, *, head2: bool = False, console_text: str = XSS,
          ) -> tuple[Verdict, dict[str, list[Capture]]]:
    """A realistic run: a console error with markup in it, a 500, a failed assertion, a moved
    box (visual change) and, optionally, a flaky second render."""
    _png(out, "base-home.png", (10, 10, 40, 30))
    _png(out, "head-home.png", (30, 10, 60, 30))
    _png(out, "head2-home.png", (30, 10, 60, 31))
    out.path("trace-head.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    out.path("head-home.json").write_text(
        '[{"selector": "#buy<b>", "text": "Buy <i>now</i>", "x": 30, "y": 10, "width": 31, "height": 21}]')
    steps = [StepResult(index=0, action="goto", description="goto /", ok=True, duration_ms=812.0),
             StepResult(index=1, action="screenshot", description="screenshot home", ok=True,
                        duration_ms=1530.0),
             StepResult(index=2, action="expect_text", description="expect_text h1 contains 'Shop'",
                        ok=True, duration_ms=12.0)]
    base = Capture(flow="home", viewport="desktop", side="base", steps=steps, trace=None,
                   screenshots=[Screenshot(name="home", step=1, artifact="base-home.png", width=120,
                                           height=80)])
    head_steps = steps[:2] + [steps[2].model_copy(update={"ok": False, "error": "got <h1>Sh0p</h1>"})]
    head = Capture(
        flow="home", viewport="desktop", side="head", steps=head_steps, trace="trace-head.zip",
        completed=False,
        console=[ConsoleEntry(type="error", text=console_text, url="http://127.0.0.1:9001/app.js",
                              line=3, column=7, step=0),
                 ConsoleEntry(type="log", text="hello", step=0)],
        page_errors=[PageError(name="TypeError", message="x is undefined",
                               stack="TypeError: x is undefined\n  at http://127.0.0.1:9001/app.js:3:7",
                               url="http://127.0.0.1:9001/app.js", line=3, column=7, step=0)],
        requests=[RequestIssue(method="GET", url="http://127.0.0.1:9001/api/p?q=<x>", status=500,
                               resource_type="fetch", step=0)],
        screenshots=[Screenshot(name="home", step=1, artifact="head-home.png", width=120, height=80,
                                elements="head-home.json")])
    captures = {"base": [base], "head": [head]}
    second = None
    if head2:
        second = [head.model_copy(update={"side": "head2", "screenshots": [
            head.screenshots[0].model_copy(update={"artifact": "head2-home.png"})]})]
        captures["head2"] = second
    findings, flaky = compare_runs([base], [head], out, head2=second)
    return judge("run-1", findings, flaky=flaky, flows=1, viewports=1, duration_s=4.2), captures


@pytest.fixture
def out(tmp_path: Path) -> ArtifactDir:
    return ArtifactDir(tmp_path / "report").ensure()


def render(verdict: Verdict, captures: dict[str, list[Capture]], out: ArtifactDir) -> str:
    path = render_report(verdict, captures, out, title="PR #7 <b>bold</b>",
                         meta={"base": "http://127.0.0.1:8001", "head": "http://127.0.0.1:9001"})
    assert path == out.root / "index.html"
    return path.read_text(encoding="utf-8")


def test_app_text_is_escaped_everywhere(out):
    verdict, captures = build(out)
    html = render(verdict, captures, out)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html
    assert html.lower().count("<script") == 1          # one script: the report's own
    script = html.split("<script>", 1)[1].split("</script>", 1)[0]
    assert script.startswith("// Diffie report: compare views")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in unescape(html)   # allowed by its hash alone
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "got &lt;h1&gt;Sh0p&lt;/h1&gt;" in html
    assert "#buy&lt;b&gt;" in html and "<i>now</i>" not in html


def test_report_folder_is_self_contained(out):
    verdict, captures = build(out)
    html = render(verdict, captures, out)
    assert '<link rel="stylesheet"' not in html and "<style>" in html and ".summary" in html
    links = re.findall(r'(?:href|src)="([^"]*)"', html)
    assert links
    for link in links:
        if link.startswith("#") or link == "data:,":      # an anchor; the empty favicon
            continue
        if link.startswith("trace/"):        # the viewer's link: shown only when served
            link = link.removeprefix("trace/")
        assert "://" not in link and not link.startswith("/") and ".." not in link, link
        assert (out.root / link).is_file(), link
    assert {"base-home.png", "head-home.png", "diff-home-desktop-home.png", "trace-head.zip"} <= set(links)


def test_summary_findings_steps_logs_and_trace_hint(out):
    verdict, captures = build(out)
    html = render(verdict, captures, out)
    assert verdict.status == "fail"
    assert 'class="summary status-fail"' in html
    for kind in ("console_error", "page_error", "request_failed", "assertion_failed", "visual_change"):
        assert f"kind-{kind}" in html
    assert "playwright show-trace trace-head.zip" in html
    assert "812 ms" in html and "1.53 s" in html                       # step timings
    assert "/api/p?q=&lt;x&gt;" in html                                 # network table, escaped
    assert "TypeError: x is undefined" in html and "stack" in html
    assert re.search(r'class="box" style="left:[0-9.]+%;top:[0-9.]+%;width:[0-9.]+%;height:[0-9.]+%"',
                     html)
    assert 'id="fv-home-desktop"' in html and 'href="#fv-home-desktop"' in html
    for f in verdict.findings:
        assert f'id="{f.id}"' in html


def test_flaky_section_and_pass_status(out):
    verdict, captures = build(out, head2=True)
    html = render(verdict, captures, out)
    assert verdict.flaky and 'id="flaky"' in html
    assert "flaky-home-desktop-home.png" in html and 'src="head2-home.png"' not in html
    assert "Console — head2" not in html and "Console — head" in html   # head2 logs not repeated
    passing = judge("run-2", [])
    html = render(passing, {"base": [], "head": []}, out)
    assert 'class="summary status-pass"' in html and "No findings" in html


def test_error_verdict_shows_the_reason(out):
    html = render(error_verdict("run-3", "deploy failed: <oops>"), {}, out)
    assert 'class="summary status-error"' in html and "deploy failed: &lt;oops&gt;" in html


def test_displayed_text_is_bounded(out):
    verdict, captures = build(out, console_text="A" * 200_000)
    html = render(verdict, captures, out)
    assert "A" * 1000 not in html
    assert len(html) < 100_000


def test_causes_lead_the_report_with_links_to_their_findings(out):
    cause = f"body > div.banner{XSS} padding 6px → 10px; 9 element(s) below moved down 8 px"
    shots = [Finding(kind="visual_change", flow=flow, viewport="desktop",
                     message=f"{flow} changed", details={"cause_key": "k", "cause": cause})
             for flow in ("home", "cart", "account")]
    verdict = judge("run-2", shots)
    html = render(verdict, {}, out)
    many = judge("run-4", [Finding(kind="visual_change", flow=f"f{i}", viewport="desktop",
                                   message="m", details={"cause_key": "k", "cause": "c"})
                           for i in range(14)])
    button = render(many, {}, out).split('data-approve="', 1)[1].split('"', 1)[0]
    assert button.split() == [f.id for f in many.findings]     # approves the whole group
    section = html.split('<section id="causes">', 1)[1].split("</section>", 1)[0]
    assert "3 screenshot(s) changed: body &gt; div.banner&lt;script&gt;" in section
    assert "3× · home @ desktop, cart @ desktop, account @ desktop" in section
    assert [f'href="#{f.id}"' in section for f in verdict.findings] == [True] * 3
    assert html.index('id="causes"') < html.index('id="findings"')
    lone = judge("run-3", shots[:1])
    assert 'id="causes"' not in render(lone, {}, out)         # one finding: nothing to group


def test_a_changed_screenshot_has_compare_views_and_zoomable_boxes(out):
    verdict, captures = build(out)
    html = render(verdict, captures, out)
    block = html.split('class="shot compare" data-mode="side" data-stop', 1)[1].split(
        '<div class="images">', 1)[0]
    for mode in ("side", "swipe", "onion", "blink", "diff"):
        assert f'data-mode="{mode}"' in block
    assert '<img class="layer head" src="head-home.png"' in block
    assert '<img class="layer base" src="base-home.png"' in block
    assert 'class="layer diff" src="diff-home-desktop-home.png"' in block
    assert re.search(r'<a class="box" href="head-home.png" style="left:[0-9.]+%;[^"]*" '
                     r'data-cx="[0-9.]+" data-cy="[0-9.]+"', block)
