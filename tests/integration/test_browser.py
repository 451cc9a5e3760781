"""BrowserRunner against real Chromium and a real HTTP server on 127.0.0.1 (pages written here)."""

from __future__ import annotations

import io
import json
import os
import random
import secrets
import signal
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from diffie.artifacts import ArtifactDir
from diffie.browser import BrowserRunner
from diffie.browser.elements import STYLE_PROPS
from diffie.capture import Capture
from diffie.config import Settings
from diffie.spec import Spec, parse_spec

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CLOCK = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf")

if not Path(CHROMIUM).exists():  # pragma: no cover
    raise RuntimeError(f"Debian Chromium is not installed at {CHROMIUM}: run scripts/bootstrap.sh")

Handler = Callable[[], tuple[int, str, bytes]]

APP_JS = b"""function boom() {
  const cart = undefined;
  return cart.items.length;
}
console.error('cart failed to load', 42);
console.log('<script>alert(1)</script>');
fetch('/api/missing.json');
fetch('/api/fail');
setTimeout(boom, 0);
setTimeout(() => { throw new RangeError('late failure'); }, 150);
"""

ERRORS_PAGE = """<!doctype html><html><head><title>errors</title></head><body>
<h1>Errors</h1><img src="/img/nope.png" alt="nope">
<script src="/app.js"></script>
</body></html>"""

HOME_PAGE = """<!doctype html><html><head><style>
body{margin:0;font-family:sans-serif}
#title{position:absolute;left:40px;top:100px;width:300px;height:50px;margin:0;font-size:20px}
ul.items{position:absolute;top:200px;left:40px;margin:0;padding:0;list-style:none}
ul.items li{height:30px;width:200px}
</style></head><body>
<h1 id="title">Welcome to the shop</h1>
<ul class="items"><li class="item">Blue mug</li><li class="item">Red mug</li>
<li class="item">Green mug</li></ul>
</body></html>"""

FORM_PAGE = """<!doctype html><html><body>
<form action="/done" method="get">
<input id="q" name="q"><select id="size" name="size"><option value="S">Small</option>
<option value="M">Medium</option></select>
<label><input id="terms" type="checkbox" name="terms"> terms</label>
<span id="hover-target" onmouseover="document.getElementById('hovered').textContent='yes'">menu</span>
<span id="hovered">no</span>
<button id="go" type="submit">Go</button></form>
<div id="late" style="display:none">late</div>
<script>setTimeout(() => document.getElementById('late').style.display = 'block', 300)</script>
</body></html>"""

DETERMINISM_PAGE = """<!doctype html><html><head><style>
body{margin:0;font-family:sans-serif}
@keyframes shift{from{background:#f00;transform:translateX(0)}to{background:#00f;transform:translateX(200px)}}
@keyframes spin{to{transform:rotate(360deg)}}
#box{position:absolute;left:20px;top:120px;width:80px;height:80px;background:#0a0;
     animation:shift 4s ease-in-out infinite alternate}
#spinner{position:absolute;left:300px;top:120px;width:60px;height:10px;background:#333;
         animation:spin 0.8s linear infinite}
</style></head><body>
<p id="now"></p><p id="rand"></p><p id="uuid"></p>
<div id="box"></div><div id="spinner"></div>
<script>
document.getElementById('now').textContent = new Date().toISOString();
document.getElementById('rand').textContent = String(Math.random());
document.getElementById('uuid').textContent = crypto.randomUUID();
</script></body></html>"""

TICKER_PAGE = """<!doctype html><html><body><h1 id="t">0</h1>
<script>let n = 0;
setInterval(() => { document.getElementById('t').textContent = String(++n); }, 15);</script>
</body></html>"""

# Changes once per rendered frame, `count` times, then stops. A screenshot renders a frame, so two
# consecutive shots differ for as long as changes remain, however slow or loaded the host is.
SETTLING_PAGE = """<!doctype html><html><body><h1 id="t">0</h1>
<script>window.startTicks = (count) => { let n = 0;
  const tick = () => { document.getElementById('t').textContent = String(++n);
    if (n < count) requestAnimationFrame(tick); };
  requestAnimationFrame(tick); };</script></body></html>"""

LAZY_PAGE = """<!doctype html><html><body style="margin:0">
<div style="height:3000px;background:#eee">tall</div>
<img id="lazy" loading="lazy" src="/img/lazy.png" width="40" height="40">
</body></html>"""

FONT_PAGE = """<!doctype html><html><head><style>
@font-face{font-family:Slow;src:url(/font/slow.ttf) format('truetype');font-display:block}
body{margin:0;background:#fff}
#txt{font-family:Slow;font-size:48px;color:#000;position:absolute;left:10px;top:10px}
</style></head><body><div id="txt">Hello fonts</div></body></html>"""


CARD_SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="320" height="240" viewBox="0 0 320 240">'
            b'<rect width="320" height="240" fill="#eef1f8"/><path fill="#3a5ba0" d="M120 60l-50 30 18 '
            b'36 22-10v94h100v-94l22 10 18-36-50-30c-8 14-22 22-40 22s-32-8-40-22z"/></svg>')

GRID_PAGE = """<!doctype html><html><head><style>
body{margin:0;background:#f5f7fa;font-family:sans-serif}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:20px;padding:24px;
      max-width:1080px;margin:0 auto}
.card{background:#fff;border:1px solid #dfe3ea;border-radius:8px;overflow:hidden}
.card img{display:block;width:100%;height:auto;background:#f5f7fa}
.card p{margin:8px 12px}
</style></head><body><div class="grid" id="grid"></div>
<script>
fetch('/api/cards').then(r => r.json()).then(cards => {
  for (const c of cards) {
    const a = document.createElement('article'); a.className = 'card';
    a.innerHTML = `<img src="/img/card${c}.svg" width="320" height="240" alt=""><p>Card ${c}</p>`;
    document.getElementById('grid').appendChild(a);
  }
});
</script></body></html>"""


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buf, "PNG")
    return buf.getvalue()


class Site:
    """A tiny threaded web app: path -> handler; records every request path."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[str] = []
        site = self

        class _H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                site.requests.append(self.path)
                handler = site.routes.get(path)
                if handler is None:
                    status, ctype, body = 404, "text/plain", b"not found"
                else:
                    status, ctype, body = handler()
                    if path == "/me":
                        cookie = self.headers.get("Cookie", "")
                        body = body.replace(b"COOKIE", cookie.encode())
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def page(self, path: str, html: str) -> None:
        self.routes[path] = lambda: (200, "text/html; charset=utf-8", html.encode())


def _delayed(seconds: float, status: int, ctype: str, body: bytes, *, jitter: float = 0.0) -> Handler:
    def handler() -> tuple[int, str, bytes]:
        time.sleep(seconds + random.random() * jitter)
        return status, ctype, body
    return handler


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site()
    s.page("/", HOME_PAGE)
    s.page("/errors", ERRORS_PAGE)
    s.page("/form", FORM_PAGE)
    s.page("/done", "<!doctype html><h1 id='done'>Thanks</h1>")
    s.page("/determinism", DETERMINISM_PAGE)
    s.page("/ticker", TICKER_PAGE)
    s.page("/settling", SETTLING_PAGE)
    s.page("/lazy", LAZY_PAGE)
    s.page("/font", FONT_PAGE)
    s.page("/me", "<!doctype html><p id='who'>COOKIE</p>")
    s.routes["/masked"] = lambda: (200, "text/html", (
        "<!doctype html><body style='margin:0'><h1>Offers</h1>"
        f"<div class='ad' style='position:absolute;left:10px;top:80px;width:200px;height:40px;"
        f"background:#{secrets.token_hex(3)}'>{secrets.token_hex(8)}</div></body>").encode())
    s.routes["/app.js"] = lambda: (200, "application/javascript", APP_JS)
    s.routes["/api/fail"] = lambda: (500, "application/json", b'{"error":"boom"}')
    s.routes["/img/lazy.png"] = _delayed(0.3, 200, "image/png", _png((0, 0, 255)))
    if FONT.exists():
        s.routes["/font/slow.ttf"] = _delayed(0.8, 200, "font/ttf", FONT.read_bytes())
    s.page("/grid", GRID_PAGE)
    s.routes["/api/cards"] = _delayed(0, 200, "application/json", b"[0,1,2,3,4,5,6,7]", jitter=0.15)
    for i in range(8):
        s.routes[f"/img/card{i}.svg"] = _delayed(0, 200, "image/svg+xml", CARD_SVG, jitter=0.15)
    s.thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture(scope="module")
def runner() -> Iterator[BrowserRunner]:
    with BrowserRunner(Settings(chromium_path=CHROMIUM)) as r:
        yield r


def _spec(text: str) -> Spec:
    return parse_spec(text)


def _run(runner: BrowserRunner, spec: Spec, base_url: str, out: ArtifactDir, *, side: str = "base",
         viewport: str = "desktop", seed: int = 1) -> Capture:
    flow = spec.flows[0]
    return runner.run_flow(spec, flow, viewport, spec.viewports[viewport], base_url, side,  # type: ignore[arg-type]
                           out, clock=CLOCK, seed=seed)


def _elements(out: ArtifactDir, capture: Capture, index: int = 0) -> list[dict[str, object]]:
    name = capture.screenshots[index].elements
    assert name is not None
    data = json.loads(out.path(name).read_text())
    assert isinstance(data, list)
    return data


def _by_selector(elements: list[dict[str, object]], selector: str) -> dict[str, object]:
    found = [e for e in elements if e["selector"] == selector]
    assert found, f"{selector} not in {[e['selector'] for e in elements][:40]}"
    return found[0]


# --- capture: console, page errors, requests ------------------------------------------------

def test_console_page_errors_and_failed_requests_are_captured_with_steps(runner, site, tmp_path):
    spec = _spec("""
flows:
  - name: errors
    steps:
      - goto: /errors
      - wait_for: h1
""")
    out = ArtifactDir(tmp_path)
    cap = _run(runner, spec, site.url, out)
    assert cap.completed and cap.error is None, cap
    assert [s.ok for s in cap.steps] == [True, True]

    errors = [c for c in cap.console if c.type == "error" and "cart failed" in c.text]
    assert errors, cap.console
    assert errors[0].text == "cart failed to load 42"
    assert errors[0].url == f"{site.url}/app.js" and errors[0].line == 5
    assert errors[0].step == 0

    echoes = [c for c in cap.console if c.text.startswith("Failed to load resource")]
    assert echoes and all(c.line is None for c in echoes)     # Chromium's echo of a 404: no position

    # console text from the page is kept as text, unescaped and unexecuted
    assert any(c.text == "<script>alert(1)</script>" for c in cap.console)

    # both uncaught errors thrown by timers are page errors (not swallowed by a fake clock),
    # including the one thrown after the last step returned
    assert [e.name for e in cap.page_errors] == ["TypeError", "RangeError"], cap.page_errors
    err = cap.page_errors[0]
    assert err.name == "TypeError"
    assert "items" in err.message
    assert err.stack and "boom" in err.stack
    assert (err.url, err.line) == (f"{site.url}/app.js", 3)
    assert err.column is not None

    by_url = {r.url.removeprefix(site.url): r for r in cap.requests}
    assert by_url["/api/missing.json"].status == 404
    assert by_url["/api/missing.json"].method == "GET"
    assert by_url["/api/fail"].status == 500
    assert by_url["/api/fail"].resource_type == "fetch"
    assert by_url["/img/nope.png"].status == 404
    assert by_url["/img/nope.png"].resource_type == "image"


def test_failed_request_without_response_is_recorded(runner, site, tmp_path):
    dead = _closed_port_url()     # an origin the operator allows, where nothing listens
    site.page("/dead-script", f"<!doctype html><h1>x</h1><script src='{dead}/x.js'></script>")
    spec = _spec("flows:\n  - name: dead\n    steps:\n      - goto: /dead-script\n")
    settings = runner.settings
    runner.settings = settings.model_copy(update={"browser_allowed_origins": [dead]})
    try:
        cap = _run(runner, spec, site.url, ArtifactDir(tmp_path))
    finally:
        runner.settings = settings
    assert cap.completed
    failed = [r for r in cap.requests if r.url == f"{dead}/x.js"]
    assert failed and failed[0].status is None and "ERR_CONNECTION_REFUSED" in (failed[0].failure or "")
    assert not failed[0].blocked


def test_a_request_to_another_origin_is_blocked_not_failed(runner, site, tmp_path):
    other = _closed_port_url()
    site.page("/other-script", f"<!doctype html><h1>x</h1><script src='{other}/x.js'></script>")
    spec = _spec("flows:\n  - name: other\n    steps:\n      - goto: /other-script\n")
    cap = _run(runner, spec, site.url, ArtifactDir(tmp_path))
    assert cap.completed
    [blocked] = [r for r in cap.requests if r.url == f"{other}/x.js"]
    assert blocked.blocked and "blocked by Diffie" in (blocked.failure or "")


# --- steps -----------------------------------------------------------------------------------

def test_all_interaction_steps_and_expectations(runner, site, tmp_path):
    spec = _spec("""
flows:
  - name: form
    steps:
      - goto: /form
      - expect_visible: "#late"
      - fill: {selector: "#q", value: "mugs"}
      - select: {selector: "#size", value: "M"}
      - check: "#terms"
      - hover: "#hover-target"
      - expect_text: {selector: "#hovered", text: "yes"}
      - press: {selector: "#q", key: "Enter"}
      - expect_url: "/done?q=mugs&size=M&terms=on"
      - wait_for: {selector: "#done", state: visible}
      - expect_text: {selector: "#done", text: "Thanks"}
      - press: Tab
""")
    cap = _run(runner, spec, site.url, ArtifactDir(tmp_path))
    assert cap.completed, [s for s in cap.steps if not s.ok]
    assert len(cap.steps) == 12 and all(s.ok for s in cap.steps)
    assert cap.steps[0].duration_ms > 0 and all(s.duration_ms >= 0 for s in cap.steps)
    assert cap.steps[2].line is not None


def test_selector_that_never_appears_fails_fast_and_stops_the_flow(runner, site, tmp_path):
    spec = _spec("""
timeout_ms: 1500
flows:
  - name: missing
    steps:
      - goto: /
      - click: "#buy"
      - screenshot: never
""")
    started = time.monotonic()
    cap = _run(runner, spec, site.url, ArtifactDir(tmp_path))
    elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed
    assert not cap.completed and cap.error is None
    assert [s.ok for s in cap.steps] == [True, False]          # stopped: no screenshot step
    assert cap.steps[1].error == "selector '#buy' did not appear within 1500 ms"
    assert cap.failed_step() is cap.steps[1]
    assert cap.screenshots == []


def test_a_page_stuck_in_a_loop_fails_the_step_instead_of_hanging(runner, site, tmp_path):
    site.page("/hang", "<!doctype html><button id='spin' onclick='while (true) {}'>spin</button>")
    spec = _spec("""
timeout_ms: 1500
flows:
  - name: hang
    steps:
      - goto: /hang
      - click: "#spin"
      - screenshot: hung
""")
    started = time.monotonic()
    cap = _run(runner, spec, site.url, ArtifactDir(tmp_path))
    # bounded, though not by the step timeout alone: with trace snapshots on, Playwright spends a
    # few more seconds trying to snapshot the stuck page
    assert time.monotonic() - started < 30
    assert not cap.completed and cap.error is None
    failed = cap.failed_step()
    assert failed is not None and "stopped responding" in (failed.error or ""), cap.steps
    assert cap.trace is not None


def test_expectation_failures_read_well(runner, site, tmp_path):
    spec = _spec("""
flows:
  - name: expect
    steps:
      - goto: /
      - expect_text: {selector: "#title", text: "Goodbye", timeout_ms: 700}
""")
    cap = _run(runner, spec, site.url, ArtifactDir(tmp_path))
    assert cap.steps[1].error == ("text of '#title' did not contain 'Goodbye' within 700 ms "
                                  "(it was 'Welcome to the shop')")
    spec = _spec("""
flows:
  - name: url
    steps:
      - goto: /
      - expect_url: {url: "/checkout", timeout_ms: 400}
""")
    cap = _run(runner, spec, site.url, ArtifactDir(tmp_path))
    assert cap.steps[1].error and cap.steps[1].error.startswith("page URL did not contain '/checkout'")
    spec = _spec("""
flows:
  - name: select
    steps:
      - goto: /form
      - select: {selector: "#size", value: "XXL", timeout_ms: 400}
""")
    cap = _run(runner, spec, site.url, ArtifactDir(tmp_path))
    assert cap.steps[1].error == ("selector '#size' was found but option 'XXL' could not be selected "
                                  "within 400 ms")


def test_unreachable_url_is_a_failed_step_with_a_clear_message(runner, tmp_path):
    url = _closed_port_url()
    spec = _spec("flows:\n  - name: down\n    steps:\n      - goto: /\n      - screenshot: home\n")
    cap = _run(runner, spec, url, ArtifactDir(tmp_path))
    assert not cap.completed and cap.error is None
    assert len(cap.steps) == 1 and not cap.steps[0].ok
    assert cap.steps[0].error == (f"could not open {url}/: connection refused (is the app running on "
                                  "that port?) (net::ERR_CONNECTION_REFUSED)")


def test_signed_in_flow_sends_session_cookies(runner, site, tmp_path):
    spec = _spec("""
session_cookies:
  - {name: session, value: ada-token}
flows:
  - name: me
    signed_in: true
    steps:
      - goto: /me
      - expect_text: {selector: "#who", text: "session=ada-token"}
  - name: anon
    steps:
      - goto: /me
""")
    cap = _run(runner, spec, site.url, ArtifactDir(tmp_path))
    assert cap.completed, cap.steps
    anon = runner.run_flow(spec, spec.flows[1], "desktop", spec.viewports["desktop"], site.url, "base",
                           ArtifactDir(tmp_path), clock=CLOCK)
    assert anon.completed


# --- artifacts -------------------------------------------------------------------------------

def test_screenshot_trace_and_element_map(runner, site, tmp_path):
    spec = _spec("flows:\n  - name: home\n    steps:\n      - goto: /\n      - screenshot: home\n")
    out = ArtifactDir(tmp_path)
    cap = _run(runner, spec, site.url, out, side="head")
    assert cap.completed, cap.steps
    shot = cap.screenshots[0]
    assert shot.artifact == "head-home-desktop-home.png"
    assert (shot.width, shot.height) == (1280, 800)
    assert shot.stable and shot.attempts == 2
    with Image.open(out.path(shot.artifact)) as img:
        assert img.size == (1280, 800)

    assert cap.trace == "head-home-desktop-trace.zip"
    assert zipfile.is_zipfile(out.path(cap.trace))
    with zipfile.ZipFile(out.path(cap.trace)) as z:
        assert any(n.endswith(".trace") for n in z.namelist())

    assert shot.elements == "head-home-desktop-home-elements.json"
    elements = _elements(out, cap)
    title = _by_selector(elements, "#title")
    assert title["text"] == "Welcome to the shop"
    assert (title["x"], title["y"], title["width"], title["height"]) == (40, 100, 300, 50)
    style = title["style"]                  # computed values, for "colour a → b" explanations
    assert isinstance(style, dict)
    assert style["color"].startswith("rgb") and style["font-size"].endswith("px")
    assert style["opacity"] == "1" and set(style) <= set(STYLE_PROPS)
    assert title["tag"] == "h1"             # an id selector says what the element is
    assert "tag" not in _by_selector(elements, "body > ul.items > li.item:nth-of-type(2)")
    mug = _by_selector(elements, "body > ul.items > li.item:nth-of-type(2)")
    assert mug["text"] == "Red mug" and (mug["x"], mug["y"]) == (40, 230)
    assert all(len(str(e["text"])) <= 80 for e in elements)
    assert set(out.names()) == {shot.artifact, shot.elements, cap.trace}


def test_mobile_viewport(runner, site, tmp_path):
    spec = _spec("flows:\n  - name: home\n    steps:\n      - goto: /\n      - screenshot: home\n")
    out = ArtifactDir(tmp_path)
    cap = _run(runner, spec, site.url, out, viewport="mobile")
    assert cap.completed
    assert (cap.screenshots[0].width, cap.screenshots[0].height) == (390, 844)
    assert cap.screenshots[0].artifact == "base-home-mobile-home.png"
    # no <meta name=viewport>: laid out 980 px wide and shown zoomed out; the element map is in the
    # screenshot's pixels, so the title's box shrinks with the zoom
    title = _by_selector(_elements(out, cap), "#title")
    scale = 390 / 980
    assert abs(int(str(title["x"])) - 40 * scale) <= 1 and abs(int(str(title["width"])) - 300 * scale) <= 1


def test_masks_hide_changing_content_identically(runner, site, tmp_path):
    spec = _spec("""
masks: [".ad"]
flows:
  - name: offers
    steps:
      - goto: /masked
      - screenshot: {name: offers, mask: ["h1"]}
""")
    out1, out2 = ArtifactDir(tmp_path / "1"), ArtifactDir(tmp_path / "2")
    cap1 = _run(runner, spec, site.url, out1)
    cap2 = _run(runner, spec, site.url, out2)
    shot1, shot2 = cap1.screenshots[0], cap2.screenshots[0]
    assert out1.path(shot1.artifact).read_bytes() == out2.path(shot2.artifact).read_bytes()
    boxes = [(b.x, b.y, b.width, b.height) for b in shot1.mask_boxes]
    assert (10, 80, 200, 40) in boxes and len(boxes) == 2
    with Image.open(out1.path(shot1.artifact)) as img:
        assert img.convert("RGB").getpixel((100, 100)) == (255, 0, 255)


# --- determinism -----------------------------------------------------------------------------

def _mulberry32(seed: int) -> Callable[[], float]:
    state = seed & 0xFFFFFFFF

    def imul(a: int, b: int) -> int:
        return (a * b) & 0xFFFFFFFF

    def nxt() -> float:
        nonlocal state
        state = (state + 0x6D2B79F5) & 0xFFFFFFFF
        t = state
        t = imul(t ^ (t >> 15), t | 1)
        t ^= (t + imul(t ^ (t >> 7), t | 61)) & 0xFFFFFFFF
        return ((t ^ (t >> 14)) & 0xFFFFFFFF) / 4294967296

    return nxt


DETERMINISM_SPEC = """
flows:
  - name: det
    steps:
      - goto: /determinism
      - screenshot: det
"""


def test_clock_random_and_animations_give_identical_screenshots(runner, site, tmp_path):
    spec = _spec(DETERMINISM_SPEC)
    outs = [ArtifactDir(tmp_path / str(i)) for i in range(2)]
    caps = [_run(runner, spec, site.url, out) for out in outs]
    pngs = [out.path(cap.screenshots[0].artifact).read_bytes() for out, cap in zip(outs, caps, strict=True)]
    assert pngs[0] == pngs[1]

    elements = _elements(outs[0], caps[0])
    # clock: new Date() is the run's instant
    assert _by_selector(elements, "#now")["text"] == "2024-05-06T07:08:09.000Z"
    # randomness: Math.random is the seeded PRNG (first draw for seed 1)
    assert _by_selector(elements, "#rand")["text"] == repr(_mulberry32(1)())
    uuid = str(_by_selector(elements, "#uuid")["text"])
    assert len(uuid) == 36 and uuid[14] == "4"
    # animations: finished at once, so the box shows its own (green) background at its own place
    with Image.open(outs[0].path(caps[0].screenshots[0].artifact)) as img:
        rgb = img.convert("RGB")
        assert rgb.getpixel((60, 160)) == (0, 170, 0)
        assert rgb.getpixel((330, 125)) == (51, 51, 51)      # spinner bar unrotated


def test_images_arriving_in_any_order_give_identical_screenshots(runner, site, tmp_path):
    # Cards rendered after a fetch, images in rounded clips arriving with random delays: with
    # Chromium's partial raster on, 6 runs of this page gave 3 different screenshots.
    spec = _spec("flows:\n  - name: grid\n    steps:\n      - goto: /grid\n      - screenshot: grid\n")
    pngs = set()
    for i in range(4):
        out = ArtifactDir(tmp_path / str(i))
        cap = _run(runner, spec, site.url, out)
        pngs.add(out.path(cap.screenshots[0].artifact).read_bytes())
    assert len(pngs) == 1


def test_another_seed_changes_random_values(runner, site, tmp_path):
    spec = _spec(DETERMINISM_SPEC)
    out = ArtifactDir(tmp_path)
    cap = _run(runner, spec, site.url, out, seed=7)
    assert _by_selector(_elements(out, cap), "#rand")["text"] == repr(_mulberry32(7)())


def test_lazy_images_are_loaded_before_a_full_page_screenshot(runner, site, tmp_path):
    spec = _spec("""
flows:
  - name: lazy
    steps:
      - goto: /lazy
      - screenshot: {name: lazy, full_page: true}
""")
    out = ArtifactDir(tmp_path)
    cap = _run(runner, spec, site.url, out)
    shot = cap.screenshots[0]
    assert shot.height > 3000
    img_box = _by_selector(_elements(out, cap), "#lazy")
    with Image.open(out.path(shot.artifact)) as img:
        x, y = (int(float(str(img_box[k]))) for k in ("x", "y"))
        assert img.convert("RGB").getpixel((x + 20, y + 20)) == (0, 0, 255)


def test_web_fonts_are_awaited(runner, site, tmp_path):
    assert FONT.exists(), f"{FONT} missing: scripts/bootstrap.sh installs fonts-dejavu-core"
    spec = _spec("flows:\n  - name: font\n    steps:\n      - goto: /font\n      - screenshot: font\n")
    out = ArtifactDir(tmp_path)
    cap = _run(runner, spec, site.url, out)
    box = _by_selector(_elements(out, cap), "#txt")
    with Image.open(out.path(cap.screenshots[0].artifact)) as img:
        x, y, w, h = (int(str(box[k])) for k in ("x", "y", "width", "height"))
        region = img.convert("L").crop((x, y, x + w, y + h))
        darkest = region.getextrema()[0]
        assert isinstance(darkest, int | float) and darkest < 50   # text drawn (font-display:
        # block hides it until loaded)


def test_a_page_that_never_settles_is_marked_unstable(runner, site, tmp_path):
    spec = _spec("flows:\n  - name: tick\n    steps:\n      - goto: /ticker\n      - screenshot: tick\n")
    cap = _run(runner, spec, site.url, ArtifactDir(tmp_path))
    assert cap.completed
    assert cap.screenshots[0].attempts == 5 and cap.screenshots[0].stable is False


def test_retake_until_two_shots_agree(runner, site):
    # Drive stable_screenshot directly on a page that changes a few times, then stops.
    from diffie.browser import stabilise

    browser = runner._ensure_browser()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site.url + "/settling")
        page.evaluate("startTicks(6)")
        shot = stabilise.stable_screenshot(page, full_page=False, timeout_ms=10000,
                                           max_shots=10)
        # only the settled page can give two identical consecutive shots
        assert shot.stable and shot.attempts >= 2
        assert page.text_content("#t") == "6"
        assert shot.png == page.screenshot(animations="disabled", caret="hide", scale="css")
    finally:
        context.close()


# --- run_all and infrastructure ----------------------------------------------------------------

def test_run_all_covers_every_flow_and_viewport(runner, site, tmp_path):
    spec = _spec("""
flows:
  - name: home
    steps: [{goto: /}, {screenshot: home}]
  - name: form
    viewports: [mobile]
    steps: [{goto: /form}]
""")
    messages: list[str] = []
    caps = runner.run_all(spec, site.url, "head", ArtifactDir(tmp_path), clock=CLOCK,
                          progress=messages.append)
    assert [(c.flow, c.viewport) for c in caps] == [
        ("home", "desktop"), ("home", "mobile"), ("form", "mobile")]
    assert all(c.completed and c.side == "head" for c in caps)
    assert len(messages) == 6


def _closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_renderers_after(seconds: float) -> threading.Thread:
    """Kill this test's Chromium renderer processes (descendants of this process only)."""
    def kill() -> None:
        time.sleep(seconds)
        for pid in _descendants(os.getpid()):
            try:
                if b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_renderer_crash_is_an_infrastructure_error_and_the_runner_recovers(runner, site, tmp_path):
    spec = _spec("flows:\n  - name: crash\n    steps:\n      - goto: /\n"
                 "      - wait_for: {selector: '#never', timeout_ms: 20000}\n")
    killer = _kill_renderers_after(2.0)
    cap = _run(runner, spec, site.url, ArtifactDir(tmp_path))
    killer.join()
    assert cap.error and "crashed" in cap.error and not cap.completed

    runner._browser.close()          # the browser itself went away: the next flow relaunches it
    spec = _spec("flows:\n  - name: home\n    steps:\n      - goto: /\n")
    cap = _run(runner, spec, site.url, ArtifactDir(tmp_path))
    assert cap.completed and cap.error is None


# --- a step that timed out waiting on the server is tried once more -----------------------------

def _slow_first(seconds: float) -> Handler:
    calls = {"n": 0}

    def handler() -> tuple[int, str, bytes]:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(seconds)
        return 200, "text/html", b"<!doctype html><h1 id='done'>Signed in</h1>"
    return handler


SLOW_FORM = """<!doctype html><html><body><form action="{action}" method="get">
<input id="q" name="q"><button id="go" type="submit">Go</button></form></body></html>"""


def test_a_timeout_waiting_on_the_server_runs_the_flow_again(runner, site, tmp_path):
    site.page("/slow-form", SLOW_FORM.format(action="/slow-once"))
    site.routes["/slow-once"] = _slow_first(2.5)
    spec = _spec("""
timeout_ms: 1000
flows:
  - name: submit
    viewports: [desktop]
    steps: [{goto: /slow-form}, {fill: {selector: "#q", value: x}}, {click: "#go"},
            {expect_text: {selector: "#done", text: Signed in}}]
""")
    messages: list[str] = []
    [cap] = runner.run_all(spec, site.url, "head", ArtifactDir(tmp_path), clock=CLOCK,
                           progress=messages.append)
    assert cap.completed and cap.failed_step() is None
    assert cap.attempts == 2
    assert cap.first_attempt and "waiting for the server" in cap.first_attempt
    assert "GET " in cap.first_attempt and "/slow-once" in cap.first_attempt
    assert any("running the flow again" in m for m in messages)


def test_an_always_slow_answer_still_fails_and_says_what_it_waited_for(runner, site, tmp_path):
    site.page("/slower-form", SLOW_FORM.format(action="/slow-always"))
    site.routes["/slow-always"] = _delayed(2.5, 200, "text/html", b"<h1 id='done'>late</h1>")
    spec = _spec("""
timeout_ms: 1000
flows:
  - name: submit
    viewports: [desktop]
    steps: [{goto: /slower-form}, {click: "#go"}, {expect_text: {selector: "#done", text: late}}]
""")
    [cap] = runner.run_all(spec, site.url, "head", ArtifactDir(tmp_path), clock=CLOCK)
    failed = cap.failed_step()
    assert failed is not None and failed.index == 1 and cap.attempts == 2
    assert failed.error and "still waiting for the server to answer GET /slow-always" in failed.error
    assert failed.pending_requests


def test_a_missing_element_is_not_tried_again(runner, site, tmp_path):
    spec = _spec("""
timeout_ms: 500
flows:
  - name: missing
    viewports: [desktop]
    steps: [{goto: /}, {click: "#no-such-button"}]
""")
    [cap] = runner.run_all(spec, site.url, "head", ArtifactDir(tmp_path), clock=CLOCK)
    failed = cap.failed_step()
    assert failed is not None and not failed.pending_requests and cap.attempts == 1


def test_an_api_that_answered_500_is_not_waited_on(runner, site, tmp_path):
    site.page("/api-fails", "<!doctype html><div id='grid'></div><script>"
              "fetch('/api/fail').then(r => r.json()).then(() => {});</script>")
    spec = _spec("""
timeout_ms: 1000
flows:
  - name: grid
    viewports: [desktop]
    steps: [{goto: /api-fails}, {expect_visible: ".card"}]
""")
    [cap] = runner.run_all(spec, site.url, "head", ArtifactDir(tmp_path), clock=CLOCK)
    failed = cap.failed_step()
    assert failed is not None and failed.index == 1
    assert not failed.pending_requests and cap.attempts == 1


def test_a_goto_lets_the_page_before_it_answer_what_it_asked_for(runner, site, tmp_path):
    # the page's API answers 500 after 0.6 s; the next step leaves the page at once. Without
    # waiting, the navigation aborts the fetch (net::ERR_ABORTED, ignored) and the 500 is seen
    # or not depending on the server's speed; it is always seen, against the step that loaded it
    site.page("/slow-fails", "<!doctype html><div id='grid'>Loading</div><script>"
              "fetch('/api/slow-fail').then(r => r.json()).catch(() => {});</script>")
    site.routes["/api/slow-fail"] = _delayed(0.6, 500, "application/json", b'{"error":"boom"}')
    spec = _spec("""
flows:
  - name: leave
    viewports: [desktop]
    steps: [{goto: /slow-fails}, {expect_visible: "#grid"}, {goto: /done}, {expect_visible: "#done"}]
""")
    [cap] = runner.run_all(spec, site.url, "head", ArtifactDir(tmp_path), clock=CLOCK)
    assert cap.completed and cap.failed_step() is None, [(s.index, s.error) for s in cap.steps]
    [issue] = [r for r in cap.requests if r.url.endswith("/api/slow-fail")]
    assert (issue.status, issue.failure, issue.step) == (500, None, 1), issue


def test_an_expectation_waiting_on_a_slow_api_says_so_and_is_tried_again(runner, site, tmp_path):
    site.page("/slow-api", "<!doctype html><p id='total'></p><script>fetch('/api/slow-total')"
              ".then(r => r.text()).then(t => { document.getElementById('total').textContent = t; });"
              "</script>")
    site.routes["/api/slow-total"] = _delayed(2.5, 200, "text/plain", b"$28.95")
    spec = _spec("""
timeout_ms: 1000
flows:
  - name: total
    viewports: [desktop]
    steps: [{goto: /slow-api}, {expect_text: {selector: "#total", text: "$28.95"}}]
""")
    [cap] = runner.run_all(spec, site.url, "head", ArtifactDir(tmp_path), clock=CLOCK)
    failed = cap.failed_step()
    assert failed is not None and cap.attempts == 2
    assert failed.error and "still waiting for the server to answer GET /api/slow-total" in failed.error
