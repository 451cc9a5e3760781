"""An app of two services (a front end and its API, each on its own loopback port, as a VM's
forwards are): real Chromium, a flow on the front end whose page fetches the API, a goto to
the API, session cookies on the flow's service; and a third local port (an "internal service"
holding a canary), which stays blocked by each fence alone and by both."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from diffie.artifacts import ArtifactDir
from diffie.browser import BrowserRunner
from diffie.config import Settings
from diffie.services import ServiceUrls
from diffie.spec import parse_spec
from tests.security.attacks import CanaryServer, leaks

pytestmark = pytest.mark.integration
CLOCK = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


class Service:
    """A loopback HTTP service answering ``pages(path, cookie) -> (content type, body)``, with
    CORS for ``cors_origin``."""

    def __init__(self, pages: Callable[[str, str], tuple[str, str] | None]) -> None:
        self.cors_origin = ""
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = pages(self.path, self.headers.get("Cookie", ""))
                body = (page[1] if page else "not found").encode()
                self.send_response(200 if page else 404)
                self.send_header("Content-Type", page[0] if page else "text/plain")
                if service.cors_origin:
                    self.send_header("Access-Control-Allow-Origin", service.cors_origin)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class App:
    """``web`` serves a page that fetches ``api`` (shown in #api) and the internal service
    (#other: "blocked" when the fetch fails)."""

    def __init__(self, internal: str) -> None:
        self.api = Service(lambda path, cookie: {
            "/": ("text/html", "<h1>api home</h1>"),
            "/data": ("text/plain", "api says hi"),
            "/whoami": ("text/html", f"<p id=who>cookie: {cookie or 'none'}</p>"),
        }.get(path))
        self.web = Service(lambda path, _cookie: {
            "/": ("text/html", (
                "<h1>tasks</h1><p id=api>...</p><p id=other>...</p><script>"
                f"fetch('{self.api.url}/data').then(r => r.text())"
                ".then(t => { document.getElementById('api').textContent = t; });"
                f"fetch('{internal}/secret').then(r => r.text())"
                ".then(t => { document.getElementById('other').textContent = t; })"
                ".catch(() => { document.getElementById('other').textContent = 'blocked'; });"
                "</script>")),
        }.get(path))
        self.api.cors_origin = self.web.url
        self.urls = ServiceUrls({"web": self.web.url, "api": self.api.url})

    def close(self) -> None:
        self.web.close()
        self.api.close()


@pytest.fixture(scope="module")
def internal() -> Iterator[CanaryServer]:
    with CanaryServer() as server:
        yield server


@pytest.fixture(scope="module")
def app(internal: CanaryServer) -> Iterator[App]:
    made = App(internal.url)
    yield made
    made.close()


SPEC = """\
viewports:
  desktop: {width: 800, height: 600}
session_cookies:
  - {name: sid, value: ada}
flows:
  - name: front
    steps:
      - goto: /
      - expect_text: {selector: "#api", text: api says hi}
      - expect_text: {selector: "#other", text: blocked}
      - expect_url: /
      - goto: {url: /, service: api}
      - expect_text: {selector: h1, text: api home}
      - expect_url: {url: /, service: api}
  - name: api
    service: api
    signed_in: true
    steps:
      - goto: /whoami
      - expect_text: {selector: "#who", text: "cookie: sid=ada"}
      - goto: {url: /, service: web}
      - expect_text: {selector: "#api", text: api says hi}
sandbox:
  image: tasks
  services:
    - {name: web, port: 3000}
    - {name: api, port: 8000}
"""


@pytest.mark.parametrize(("route_fence", "proxy_fence"), [(True, True), (True, False),
                                                          (False, True)])
def test_a_flow_reaches_every_service_and_nothing_else(tmp_path: Path, app: App,
                                                       internal: CanaryServer,
                                                       route_fence: bool,
                                                       proxy_fence: bool) -> None:
    spec = parse_spec(SPEC)
    before = internal.connections
    out = tmp_path / "out"
    settings = Settings(data_dir=tmp_path / "data", chromium_path="/usr/bin/chromium")
    with BrowserRunner(settings, route_fence=route_fence, proxy_fence=proxy_fence) as runner:
        front, api = runner.run_all(spec, app.urls, "head", ArtifactDir(out), clock=CLOCK)
    for capture in (front, api):
        failed = capture.failed_step()
        assert capture.completed and failed is None, (capture.flow, failed, capture.error)
    # the page's fetch of the API went through; the internal port was never connected to
    assert internal.connections == before, internal.paths
    assert leaks(internal.canary, out) == []
    for capture in (front, api):           # both open the front end's page once
        blocked = [r.url for r in capture.requests if r.blocked]
        assert blocked == [f"{internal.url}/secret"], capture.requests


def test_expect_url_tells_the_services_apart(tmp_path: Path, app: App) -> None:
    spec = parse_spec(SPEC.replace("      - expect_url: {url: /, service: api}\n",
                                   "      - expect_url: {url: /, timeout_ms: 500}\n"))
    settings = Settings(data_dir=tmp_path / "data", chromium_path="/usr/bin/chromium")
    with BrowserRunner(settings) as runner:
        capture = runner.run_flow(spec, spec.flows[0], "desktop", spec.viewports["desktop"],
                                  app.urls, "head", ArtifactDir(tmp_path / "out"), clock=CLOCK)
    failed = capture.failed_step()
    assert failed is not None and failed.index == 6
    assert failed.error is not None and "did not contain '/' on service 'web'" in failed.error
