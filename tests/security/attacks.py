"""Browser attacks of an untrusted change, reproduced against real servers on this machine's loopback.

- :class:`CanaryServer`: an "internal service" of the worker host (another loopback port) whose
  every answer holds a canary secret, with permissive CORS, counting every connection made to it.
- :class:`AttackApp`: the app under test, written by the attacker; each path is one attack that
  tries to get the canary into what Diffie records (page text quoted by a failing step, the
  DOM, the element map, screenshots, the trace).
- :func:`leaks`: every file under a folder (zip members included) that contains the canary.

Used by ``tests/security/test_browser_confinement.py`` and ``benchmarks/security.py``.
"""

from __future__ import annotations

import secrets
import socket
import threading
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class CanaryServer:
    """A loopback service holding a secret; counts connections (raw TCP accepts)."""

    def __init__(self) -> None:
        self.canary = f"CANARY-{secrets.token_hex(8)}"
        self.connections = 0
        self.paths: list[str] = []
        server = self
        body = (f"<html><body><h1>INTERNAL ADMIN PANEL</h1><p>db_password={self.canary}</p>"
                f"</body></html>").encode()

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                server.connections += 1
                super().setup()

            def _answer(self) -> None:
                server.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("X-Secret", self.server_canary())
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def server_canary(self) -> str:
                return server.canary

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> CanaryServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass(frozen=True)
class Attack:
    name: str            # flow name too
    path: str            # the attack page on the app
    what: str
    redirect: bool = False   # goes through a redirect hop (Playwright routes do not see those)


def _pages(secret: str, secret_port: int, canary_file: Path) -> dict[str, str]:
    show = "t => { document.body.innerText = 'GOT ' + t; }"
    return {
        "/nav-location": f"<script>location.replace('{secret}/admin')</script>",
        "/nav-meta-refresh": f'<meta http-equiv="refresh" content="0;url={secret}/admin">',
        "/nav-link": (f'<a id="go" href="{secret}/admin">go</a>'
                      '<script>document.getElementById("go").click()</script>'),
        "/nav-popup": f"<script>window.open('{secret}/admin')</script>",
        "/nav-form": (f'<form id="f" method="post" action="{secret}/admin"><input name="a" value="b">'
                      '</form><script>document.getElementById("f").submit()</script>'),
        "/fetch": f"<p>x</p><script>fetch('{secret}/api').then(r => r.text()).then({show})</script>",
        "/xhr": (f"<p>x</p><script>const x = new XMLHttpRequest(); x.open('GET', '{secret}/api');"
                 f"x.onload = () => ({show})(x.responseText); x.send()</script>"),
        "/img": f'<img src="{secret}/logo.png" width="40" height="40">',
        "/iframe": f'<iframe src="{secret}/admin" width="600" height="300"></iframe>',
        "/css": f'<link rel="stylesheet" href="{secret}/x.css"><style>@import url("{secret}/y.css");</style>',
        "/script": f'<script src="{secret}/x.js"></script>',
        "/prefetch": (f'<link rel="prefetch" href="{secret}/p"><link rel="preconnect" href="{secret}">'
                      f'<link rel="dns-prefetch" href="{secret}">'),
        "/beacon": f"<script>navigator.sendBeacon('{secret}/b', 'x')</script>",
        "/eventsource": (f"<script>new EventSource('{secret}/events').onmessage = "
                         f"e => ({show})(e.data)</script>"),
        "/websocket": (f"<script>const w = new WebSocket('ws://127.0.0.1:{secret_port}/ws');"
                       f"w.onmessage = e => ({show})(e.data)</script>"),
        "/worker": ("<script>const w = new Worker('/worker.js'); w.onmessage = e => "
                    f"({show})(e.data)</script>"),
        "/redirect-nav": "<script>location.replace('/redirect')</script>",
        "/redirect-fetch": f"<p>x</p><script>fetch('/redirect').then(r => r.text()).then({show})</script>",
        "/redirect-img": '<img src="/redirect" width="40" height="40">',
        "/redirect-iframe": '<iframe src="/redirect" width="600" height="300"></iframe>',
        "/file-nav": f"<script>location.href = 'file://{canary_file}'</script>",
        "/file-iframe": f'<iframe src="file://{canary_file}" width="600" height="300"></iframe>',
        "/data-nav": "<script>location.href = 'data:text/html,<h1>data</h1>'</script>",
        "/chrome-nav": "<script>location.href = 'chrome://version'</script>",
    }


ATTACKS: tuple[Attack, ...] = (
    Attack("nav-location", "/nav-location", "the app navigates to an internal port"),
    Attack("nav-meta-refresh", "/nav-meta-refresh", "a meta refresh to an internal port"),
    Attack("nav-link", "/nav-link", "a clicked link to an internal port"),
    Attack("nav-popup", "/nav-popup", "window.open of an internal port"),
    Attack("nav-form", "/nav-form", "a form POST to an internal port"),
    Attack("fetch", "/fetch", "fetch() of an internal port, text into the DOM"),
    Attack("xhr", "/xhr", "XMLHttpRequest of an internal port"),
    Attack("img", "/img", "an image from an internal port (into the screenshot)"),
    Attack("iframe", "/iframe", "an iframe of an internal port (into the screenshot)"),
    Attack("css", "/css", "stylesheets from an internal port"),
    Attack("script", "/script", "a script from an internal port"),
    Attack("prefetch", "/prefetch", "prefetch/preconnect of an internal port"),
    Attack("beacon", "/beacon", "sendBeacon to an internal port"),
    Attack("eventsource", "/eventsource", "an EventSource on an internal port"),
    Attack("websocket", "/websocket", "a WebSocket to an internal port"),
    Attack("worker", "/worker", "a dedicated worker fetching an internal port"),
    Attack("redirect-nav", "/redirect-nav", "a same-origin page that redirects to an internal port",
           redirect=True),
    Attack("redirect-fetch", "/redirect-fetch", "fetch() of a same-origin URL that redirects",
           redirect=True),
    Attack("redirect-img", "/redirect-img", "an image whose URL redirects", redirect=True),
    Attack("redirect-iframe", "/redirect-iframe", "an iframe whose URL redirects", redirect=True),
    Attack("file-nav", "/file-nav", "the app navigates to a file: URL"),
    Attack("file-iframe", "/file-iframe", "an iframe of a file: URL"),
    Attack("data-nav", "/data-nav", "the app navigates to a data: URL"),
    Attack("chrome-nav", "/chrome-nav", "the app navigates to chrome://"),
)


class AttackApp:
    """The untrusted app: every page of :data:`ATTACKS`, plus ``/redirect`` (302 to the secret)
    and ``/worker.js``."""

    def __init__(self, secret: CanaryServer, canary_file: Path) -> None:
        pages = _pages(secret.url, secret.port, canary_file)
        worker_js = (f"fetch('{secret.url}/api').then(r => r.text()).then(t => postMessage(t))"
                     ).encode()
        location = f"{secret.url}/admin"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path == "/worker.js":
                    body, ctype = worker_js, "text/javascript"
                elif path in pages:
                    body = (f"<!doctype html><html><head><title>{path}</title></head><body>"
                            f"<h1>app</h1>{pages[path]}</body></html>").encode()
                    ctype = "text/html; charset=utf-8"
                else:
                    body, ctype = b"", "text/plain"
                self.send_response(200 if path in pages or path == "/worker.js" else 404)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> AttackApp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def attack_spec(attacks: tuple[Attack, ...] = ATTACKS, *, settle_ms: int = 700) -> str:
    """A `.diffie.yml` with one flow per attack: open the page, give it time, then an
    ``expect_text`` that fails (its message would quote the page's text) and a screenshot."""
    lines = ["version: 1", "timeout_ms: 4000", "noise_floor: false",
             "viewports: {desktop: {width: 800, height: 600}}", "flows:"]
    for attack in attacks:
        lines += [f"  - name: {attack.name}", "    steps:", f"      - goto: {attack.path}",
                  "      - screenshot: {name: page, full_page: true}",
                  "      - expect_text: {selector: body, text: never-on-this-page, "
                  f"timeout_ms: {settle_ms}}}"]
    return "\n".join(lines) + "\n"


def leaks(canary: str, root: Path) -> list[str]:
    """Files under ``root`` (and members of zip files there) whose bytes contain the canary."""
    needle = canary.encode()
    found: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if needle in data:
            found.append(str(path.relative_to(root)))
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if needle in archive.read(member):
                        found.append(f"{path.relative_to(root)}!{member}")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
