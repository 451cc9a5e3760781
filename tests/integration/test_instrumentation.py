"""Diffie's instrumentation is invisible to the page: a strict Content-Security-Policy sees no
violation of Diffie's making, the page's DOM gains no element, and what the freeze does still
holds. Real Chromium, a real HTTP server on 127.0.0.1 that sends the CSP header."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from diffie.artifacts import ArtifactDir
from diffie.browser import BrowserRunner
from diffie.capture import Capture
from diffie.compare.logs import log_findings
from diffie.config import Settings
from diffie.spec import parse_spec

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CLOCK = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
STRICT_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
              "connect-src 'self'; base-uri 'none'; form-action 'self'")

# The app watches its own document: every element added by anyone but itself, every CSP
# violation, and the number of <style> elements; "report" posts what it saw to /observed.
WATCH_JS = """
const seen = {added: [], violations: []};
new MutationObserver((records) => {
  for (const r of records) for (const n of r.addedNodes) {
    if (n.nodeType === 1 && !n.dataset.app) seen.added.push(n.tagName);
  }
}).observe(document, {childList: true, subtree: true});
document.addEventListener('securitypolicyviolation',
  (e) => seen.violations.push(e.violatedDirective + ' ' + e.blockedURI));
document.getElementById('report').addEventListener('click', () => {
  seen.styles = document.querySelectorAll('style').length;
  fetch('/observed', {method: 'POST', body: JSON.stringify(seen)})
    .then(() => { const p = document.createElement('p'); p.dataset.app = '1'; p.id = 'sent';
                  p.textContent = 'sent'; document.body.appendChild(p); });
});
"""
APP_CSS = """body{margin:0;font-family:sans-serif}
.spin{width:40px;height:40px;background:#c33;animation:spin 1s infinite linear}
@keyframes spin{to{transform:rotate(360deg)}}
.fade{transition:opacity 2s;opacity:1}
.ad{width:200px;height:30px;background:#36c}"""
PAGE = """<!doctype html><html><head><title>strict</title>
<link rel="stylesheet" href="/app.css">{extra_head}</head><body>
<h1 id="title">Strict shop</h1><input id="q"><div class="spin"></div><p class="fade">fade</p>
<div class="ad">ad</div><button id="report">report</button>
<script src="/watch.js"></script></body></html>"""
# an app change that breaks its own inline style under the new CSP: the app's error, not ours
INLINE_STYLE = "<style>#title{color:#a00}</style>"


class StrictSite:
    def __init__(self) -> None:
        self.csp: str | None = STRICT_CSP
        self.extra_head = ""
        self.observed: list[dict[str, object]] = []
        site = self

        class _H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/":
                    self._send("text/html", PAGE.replace("{extra_head}", site.extra_head))
                elif path == "/app.css":
                    self._send("text/css", APP_CSS)
                elif path == "/watch.js":
                    self._send("application/javascript", WATCH_JS)
                else:
                    self._send("text/plain", "not found", 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                site.observed.append(json.loads(self.rfile.read(length) or b"{}"))
                self._send("application/json", "{}")

            def _send(self, ctype: str, body: str, status: int = 200) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                if site.csp:
                    self.send_header("Content-Security-Policy", site.csp)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def site() -> Iterator[StrictSite]:
    s = StrictSite()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture(scope="module")
def runner() -> Iterator[BrowserRunner]:
    with BrowserRunner(Settings(chromium_path=CHROMIUM)) as r:
        yield r


SPEC = parse_spec("""
flows:
  - name: strict
    viewports: [desktop]
    steps:
      - goto: /
      - fill: {selector: "#q", value: "typed"}
      - click: "#q"
      - screenshot: {name: top, mask: [".ad"]}
      - screenshot: {name: page, full_page: true}
      - expect_text: {selector: "#title", text: Strict}
      - hover: "#title"
      - click: "#report"
      - expect_visible: "#sent"
""")


def run(runner: BrowserRunner, site: StrictSite, out: ArtifactDir, side: str) -> Capture:
    flow = SPEC.flows[0]
    return runner.run_flow(SPEC, flow, "desktop", SPEC.viewports["desktop"], site.url,
                           side, out, clock=CLOCK, seed=7)  # type: ignore[arg-type]


def test_a_strict_csp_sees_nothing_of_diffie(runner: BrowserRunner, site: StrictSite,
                                            tmp_path: Path) -> None:
    cap = run(runner, site, ArtifactDir(tmp_path).ensure(), "head")
    assert [s.error for s in cap.steps if not s.ok] == []
    assert cap.console == [] and cap.page_errors == [] and cap.requests == []
    [seen] = site.observed
    assert seen == {"added": [], "violations": [], "styles": 0}, seen
    # the freeze still holds under the CSP: the spinning element renders the same every time
    shots = {s.name: s for s in cap.screenshots}
    assert shots["top"].stable and shots["page"].stable
    assert shots["top"].attempts == 2


def test_a_csp_that_breaks_the_apps_own_inline_style_is_still_caught(
        runner: BrowserRunner, site: StrictSite, tmp_path: Path) -> None:
    out = ArtifactDir(tmp_path).ensure()
    site.csp, site.extra_head = None, INLINE_STYLE
    base = run(runner, site, out, "base")
    site.csp = STRICT_CSP
    head = run(runner, site, out, "head")
    assert base.console == []
    kinds = [f.kind for f in log_findings(base, head)]
    assert "console_error" in kinds, head.console
    assert any("Content Security Policy" in c.text for c in head.console)
