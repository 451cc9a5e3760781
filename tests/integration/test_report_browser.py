"""The HTML report looked at in Chromium, opened from disk (file://) as a reviewer does: the
compare views switch (side by side, swipe, onion skin, blink, diff), the slider moves the
swipe, a region box zooms, the keys move between findings, and the page logs no console
error (a CSP violation would); the screenshots of each view are kept as test artifacts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from diffie import links, run_store
from diffie.app_context import AppContext
from diffie.artifacts import ArtifactDir
from diffie.config import Settings
from diffie.models import Approval
from diffie.verdict import Finding, error_verdict, judge
from tests.conftest import PAGE, LiveServer, Site
from tests.paths import REPO_ROOT
from tests.unit.test_report_html import build, render


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=Settings().chromium_path,
                               args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _open(browser: Browser, report: Path) -> tuple[Page, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.goto(report.as_uri())
    return page, problems


def test_compare_views_zoom_and_keys_in_chromium(browser: Browser, tmp_path: Path,
                                                 test_artifacts: Path) -> None:
    out = ArtifactDir(tmp_path / "report").ensure()
    verdict, captures = build(out)
    render(verdict, captures, out)
    page, problems = _open(browser, out.root / "index.html")
    shots = test_artifacts
    block = page.locator(".compare").first
    assert page.evaluate("document.documentElement.classList.contains('js')")
    assert block.locator(".toolbar").is_visible() and not block.locator(".stage").is_visible()

    for mode, label in (("swipe", "Swipe"), ("onion", "Onion skin"), ("blink", "Blink"),
                        ("diff", "Diff only"), ("side", "Side by side")):
        block.get_by_role("button", name=label).click()
        assert block.get_attribute("data-mode") == mode
        assert block.get_by_role("button", name=label).get_attribute("aria-pressed") == "true"
        assert block.locator(".stage").is_visible() == (mode != "side")
        assert block.locator(".images").is_visible() == (mode == "side")
        assert block.locator("input.amount").is_visible() == (mode in ("swipe", "onion"))
        block.screenshot(path=str(shots / f"{mode}.png"))

    block.get_by_role("button", name="Swipe").click()
    base = block.locator(".layer.base")
    half = base.evaluate("e => getComputedStyle(e).clipPath")
    block.locator("input.amount").fill("80")
    assert base.evaluate("e => getComputedStyle(e).clipPath") != half
    assert "20%" in base.evaluate("e => getComputedStyle(e).clipPath")
    block.get_by_role("button", name="Diff only").click()
    assert block.locator(".layer.diff").is_visible()

    stage = block.locator(".stage")
    block.locator(".stage .box").first.click()
    assert "zoomed" in (stage.get_attribute("class") or "")
    page.wait_for_function("() => getComputedStyle(document.querySelector('.compare .canvas'))"
                           ".transform.startsWith('matrix(3, 0, 0, 3')", timeout=5000)
    page.keyboard.press("Escape")
    assert "zoomed" not in (stage.get_attribute("class") or "")

    stops = page.locator("[data-stop]")
    count = stops.count()
    assert count >= 2                     # the error findings' rows, then the changed shot
    for i in range(count):
        page.keyboard.press("j")
        assert page.evaluate("document.activeElement === document.querySelectorAll("
                             f"'[data-stop]')[{i}]")
    page.keyboard.press("2")              # the current stop is the compare block: swipe
    assert block.get_attribute("data-mode") == "swipe"
    page.keyboard.press("k")
    assert page.evaluate("document.activeElement === document.querySelectorAll("
                         f"'[data-stop]')[{count - 2}]")
    assert problems == []
    page.close()


def test_the_report_works_without_its_script(browser: Browser, tmp_path: Path) -> None:
    out = ArtifactDir(tmp_path / "report").ensure()
    verdict, captures = build(out)
    html = render(verdict, captures, out)
    (out.root / "index.html").write_text(html.replace("<script>", "<script>throw 1;"))
    page, problems = _open(browser, out.root / "index.html")   # blocked: the hash differs
    assert any("Content Security Policy" in p for p in problems), problems
    block = page.locator(".compare").first
    assert not block.locator(".toolbar").is_visible()          # no dead buttons
    assert block.locator(".images img").first.is_visible()     # side by side, as before
    page.close()


AXE = REPO_ROOT / "tests" / "fixtures" / "axe-core" / "axe.min.js"


def _reports(tmp_path: Path) -> dict[str, Path]:
    """Reports of the verdicts a corpus gives: fail (every kind, a stack), changed, pass,
    error, and a change that does not deploy."""
    made: dict[str, Path] = {}
    out = ArtifactDir(tmp_path / "fail").ensure()
    verdict, captures = build(out)
    render(verdict, captures, out)
    made["fail"] = out.root / "index.html"
    out = ArtifactDir(tmp_path / "changed").ensure()
    verdict, captures = build(out, console_text="")
    visual = [f for f in verdict.findings if f.kind == "visual_change"]
    render(judge("run-c", visual), captures, out)
    made["changed"] = out.root / "index.html"
    out = ArtifactDir(tmp_path / "pass").ensure()
    render(judge("run-p", [], flows=1, viewports=1), {}, out)
    made["pass"] = out.root / "index.html"
    out = ArtifactDir(tmp_path / "error").ensure()
    render(error_verdict("run-e", "no VM slot was free within 600 s"), {}, out)
    made["error"] = out.root / "index.html"
    out = ArtifactDir(tmp_path / "deploy").ensure()
    deploy = Finding(kind="deploy_error", message="head: `npm ci` exited 1",
                     details={"command": "npm ci", "exit_code": 1, "output": "npm ERR! <x>"})
    render(judge("run-d", [deploy]), {}, out)
    made["deploy_error"] = out.root / "index.html"
    return made


def _console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


def test_reports_have_no_serious_accessibility_violations(browser: Browser, tmp_path: Path,
                                                          test_artifacts: Path) -> None:
    axe = AXE.read_text(encoding="utf-8")
    context = browser.new_context(bypass_csp=True)       # to inject axe-core, test only
    try:
        for kind, report in _reports(tmp_path).items():
            page = context.new_page()
            errors = _console_errors(page)
            page.goto(report.as_uri())
            page.add_script_tag(content=axe)
            result = page.evaluate(
                "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
                " return r.violations.map(v => [v.id, v.impact, v.help, v.nodes.slice(0, 3).map("
                "n => n.target.join(' ') + ': ' + (n.any[0] || {}).message)]); }")
            serious = [v for v in result if v[1] in ("serious", "critical")]
            assert serious == [], (kind, serious)
            assert errors == [], (kind, errors)
            page.screenshot(path=str(test_artifacts / f"{kind}.png"), full_page=True)
            page.close()
    finally:
        context.close()


def test_a_trace_opens_in_the_viewer_diffie_serves(browser: Browser, ctx: AppContext,
                                                   live_api: Callable[[AppContext], LiveServer],
                                                   test_artifacts: Path) -> None:
    """A real trace (Chromium visiting a page) recorded with a run; from the report served by
    a signed link, one click on "in the viewer" opens Playwright's trace viewer, served by
    Diffie, showing the trace's navigation; no token is needed and nothing outside this
    origin is loaded."""
    ctx.settings.api_tokens = ["read:r3ad"]
    run_id = run_store.submit_url(ctx.db, base_url="http://b", head_url="http://h",
                                  spec_text="flows: []")
    assert run_store.claim(ctx.db, run_id, "w1", stale_after_s=60, max_attempts=3) == "claimed"
    out = ArtifactDir(ctx.settings.artifacts_dir / run_id).ensure()
    verdict, captures = build(out)
    name = "head-home-desktop-trace.zip"
    with Site({"/": PAGE % "<p>traced page</p>"}) as site:
        recording = browser.new_context()
        recording.tracing.start(screenshots=True, snapshots=True)
        shot = recording.new_page()
        shot.goto(site.url)
        recording.tracing.stop(path=str(out.path(name)))
        recording.close()
    captures["head"][0] = captures["head"][0].model_copy(update={"trace": name})
    render(verdict, captures, out)
    verdict = verdict.model_copy(update={"run_id": run_id})
    assert run_store.record_verdict(ctx.db, run_id, "w1", verdict, out)
    server = live_api(ctx)
    report = links.report_url(ctx.settings, run_id, base=server.url)

    context = browser.new_context()
    seen: list[str] = []
    failed: list[str] = []
    context.on("request", lambda r: seen.append(r.url))
    context.on("response", lambda r: failed.append(f"{r.status} {r.url}")
               if r.status >= 400 else None)
    page = context.new_page()
    errors = _console_errors(page)
    page.goto(report)
    viewer = page.locator("section.flow a.viewer", has_text="head in the viewer").first
    assert viewer.is_visible()                       # served: the viewer's link shows
    viewer.click()
    page.wait_for_url(f"{server.url}/v1/trace-viewer/index.html?trace=*")
    page.get_by_text("Navigate", exact=False).first.wait_for(timeout=30_000)
    page.frame_locator("iframe").first.get_by_text("traced page").wait_for(timeout=30_000)
    page.screenshot(path=str(test_artifacts / "trace-viewer.png"))
    assert all(url.startswith((server.url, "data:", "blob:")) for url in seen), \
        [u for u in seen if not u.startswith(server.url)][:5]
    assert failed == [] and errors == [], (failed, errors)
    context.close()
    assert httpx.get(f"{server.url}/v1/runs/{run_id}/trace/{name}").status_code == 401
    assert httpx.get(f"{server.url}/v1/trace-viewer/../../../../etc/passwd").status_code == 404


def test_filters_and_approval_from_the_served_report(browser: Browser, ctx: AppContext,
                                                     live_api: Callable[[AppContext], LiveServer],
                                                     tmp_path: Path) -> None:
    """Filters hide the other findings; "Approve" asks for a note and a token with the submit
    scope and records the approval through the API (the same mechanism as the CLI, MCP and
    GitHub); a read-only token is refused and asked again."""
    ctx.settings.api_tokens = ["read:r3ad", "subm1t"]
    run_id = run_store.submit_url(ctx.db, base_url="http://b", head_url="http://h",
                                  spec_text="flows: []")
    assert run_store.claim(ctx.db, run_id, "w1", stale_after_s=60, max_attempts=3) == "claimed"
    out = ArtifactDir(ctx.settings.artifacts_dir / run_id).ensure()
    verdict, captures = build(out)
    verdict = judge(run_id, verdict.findings)
    render(verdict, captures, out)
    assert run_store.record_verdict(ctx.db, run_id, "w1", verdict, out)
    visual = [f.id for f in verdict.findings if f.kind == "visual_change"]
    server = live_api(ctx)
    page = browser.new_page()
    errors = _console_errors(page)
    page.goto(links.report_url(ctx.settings, run_id, base=server.url))

    rows = page.locator("table.findings tbody tr")
    total = rows.count()
    page.locator("select[data-filter=kind]").select_option("visual_change")
    assert [r.is_visible() for r in rows.all()].count(True) == len(visual) < total
    assert page.locator("[data-shown]").inner_text() == f"{len(visual)} of {total} shown"

    answers = iter(["the new spacing is intended", "r3ad",        # refused: read only
                    "the new spacing is intended", "subm1t"])
    page.on("dialog", lambda d: d.accept(next(answers)))
    button = page.locator(f"tr button[data-approve='{visual[0]}']")
    status = page.locator("tr [data-approve-status]").first
    button.click()
    page.wait_for_function("() => document.querySelector('tr [data-approve-status]')"
                           ".textContent.startsWith('not approved (403)')")
    button.click()
    page.wait_for_function("() => document.querySelector('tr [data-approve-status]')"
                           ".textContent.startsWith('approved 1')")
    assert button.is_disabled() and "the run is approved" in status.inner_text()
    page.close()
    with ctx.db.session() as s:
        notes = [a.note for a in s.query(Approval).all()]
    assert notes == ["the new spacing is intended"]
    assert [e for e in errors if "403" not in e] == [], errors
