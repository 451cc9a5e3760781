"""A failure carries what a person debugging it needs: the page at the moment the step failed,
and for a server error the server's answer (a few headers, the start of the body, secrets
masked). Real Chromium, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from diffie.artifacts import ArtifactDir
from diffie.browser import BrowserRunner
from diffie.compare.logs import log_findings
from diffie.config import Settings
from diffie.pipeline import write_outputs
from diffie.spec import parse_spec
from diffie.verdict import judge

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
PAGE = b"""<!doctype html><html><body style="margin:0;background:#fde">
<h1 id="title">Orders</h1><p id="state">loading</p>
<script>fetch('/api/orders').then(r => r.text()).then(t => {
  document.getElementById('state').textContent = 'failed to load orders';
});</script></body></html>"""
BOOM = (b"Traceback (most recent call last):\n  File \"app.py\", line 3, in orders\n"
        b"psycopg.errors.UndefinedColumn: column o.created_at does not exist\n"
        b"DATABASE_URL=postgres://shop:hunter2@db/shop\n")


@pytest.fixture
def site() -> Iterator[str]:
    class _H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/api/orders":
                status, ctype, body = 500, "text/plain", BOOM
            else:
                status, ctype, body = 200, "text/html", PAGE
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Set-Cookie", "session=abc123")
            self.send_header("X-Request-Id", "req-42")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_failed_step_has_its_screenshot_and_a_500_its_answer(site: str, tmp_path: Path) -> None:
    spec = parse_spec("""
flows:
  - name: orders
    viewports: [desktop]
    steps:
      - goto: /
      - expect_text: {selector: "#state", text: "3 orders", timeout_ms: 1500}
      - screenshot: never
""")
    out = ArtifactDir(tmp_path).ensure()
    with BrowserRunner(Settings(chromium_path=CHROMIUM)) as runner:
        head = runner.run_flow(spec, spec.flows[0], "desktop", spec.viewports["desktop"], site,
                               "head", out, clock=datetime(2024, 1, 1, tzinfo=UTC), seed=1)
    failed = head.failed_step()
    assert failed is not None and failed.index == 1 and failed.screenshot
    with Image.open(out.path(failed.screenshot)) as im:
        assert im.size == (1280, 800)
        assert im.convert("RGB").getpixel((600, 700)) == (0xFF, 0xDD, 0xEE)   # the page itself

    [issue] = [r for r in head.requests if r.status == 500]
    headers = issue.response_headers or {}
    assert (headers["content-type"], headers["x-request-id"]) == ("text/plain", "req-42")
    assert "set-cookie" not in headers                          # never cookies
    assert issue.response_body is not None and "UndefinedColumn" in issue.response_body
    assert "hunter2" not in issue.response_body                # masked

    findings = log_findings(None, head)
    step = next(f for f in findings if f.kind == "assertion_failed")
    assert failed.screenshot in step.evidence
    request = next(f for f in findings if f.kind == "request_failed")
    assert "UndefinedColumn" in request.details["response_body"]

    write_outputs(judge("r", findings), {"base": [], "head": [head]}, out, title="t", meta={})
    html = out.path("index.html").read_text()
    assert f'src="{failed.screenshot}"' in html and "UndefinedColumn" in html
    assert "hunter2" not in html and "abc123" not in html
