"""Determinism: make two renders of the same code produce the same pixels.

What is pinned, and how (issue 5, "Determinism"):

- **Clock**: ``Date.now()``, ``new Date()``, ``Date()`` and ``Intl.DateTimeFormat#format()``
  without a date return the run's instant (:data:`INIT_SCRIPT` replaces ``Date``). Timers
  (``setTimeout``, ``setInterval``, ``requestAnimationFrame``) stay native and run in real time, so
  apps that poll or animate in JS do not stall; ``performance.now()`` keeps advancing (it measures
  durations, and freezing it would hang busy-wait loops).
  Playwright's Clock API (``clock.set_fixed_time``/``install``) is deliberately not used: it runs
  page timers through its own fake-timer loop, which catches an exception thrown in a
  ``setTimeout`` callback and logs it with ``console.error`` (Playwright 1.65) — the uncaught
  error would never reach ``pageerror``, and Diffie would miss exactly the regressions it exists
  to catch.
- **Randomness**: ``Math.random``, ``crypto.getRandomValues`` and ``crypto.randomUUID`` draw from a
  PRNG (mulberry32) seeded per document from the run's seed (:data:`INIT_SCRIPT`).
- **Animations**: a style sheet adopted before any page script runs finishes CSS animations
  instantly and disables transitions, smooth scrolling and the caret; before each screenshot it is
  adopted again if the page dropped it, and every finite Web Animation is finished.
- **Invisible to the page**: nothing Diffie adds is an element of the page's DOM or subject to its
  Content-Security-Policy (constructed style sheets, script run through the DevTools protocol),
  so a strict CSP produces no violation and no console message of Diffie's making.
- **Loading**: before a screenshot, wait (bounded) for the network to go quiet, web fonts to load,
  lazy images (``loading=lazy`` switched to eager; for full-page shots the page is scrolled
  through once) to complete.
- **Retake**: shots are retaken until two consecutive ones are byte-identical (bounded).

Every wait here is bounded: a page can never hang the run. Page-side JavaScript runs through
:func:`evaluate`, which is bounded too (``page.evaluate`` is not, and a page stuck in a loop
would block it forever).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from playwright.sync_api import BrowserContext, FloatRect, Page, Request, Response
from playwright.sync_api import Error as PlaywrightError

from diffie.browser.masks import paint_masks
from diffie.capture import Box

MAX_SHOTS = 5                   # retake-until-stable bound
RETAKE_GAP_MS = 60              # pause between two shots, so a change in progress shows up
QUIET_MS = 250                  # "network quiet": no request started or finished for this long
SETTLE_BUDGET_MS = 5000         # at most this long waiting for network, fonts and images
_AWAITED = frozenset({"document", "fetch", "xhr"})    # what page logic and navigations wait on
_LONG_LIVED = frozenset({"eventsource", "websocket"})   # never "finish": not part of network quiet

FREEZE_CSS = (
    "*,*::before,*::after{animation-delay:-1ms!important;animation-duration:1ms!important;"
    "animation-iteration-count:1!important;transition:none!important;"
    "caret-color:transparent!important;scroll-behavior:auto!important}"
)

# Runs in every frame before any page script. %SEED% and %CSS% are filled in by init_script().
_INIT_TEMPLATE = r"""
(() => {
  const FIXED = %TIME%;
  const NativeDate = globalThis.Date;
  function Date(...args) {
    if (!new.target) return new NativeDate(FIXED).toString();
    return Reflect.construct(NativeDate, args.length ? args : [FIXED], new.target);
  }
  Object.setPrototypeOf(Date, NativeDate);
  Date.prototype = NativeDate.prototype;
  Date.now = function now() { return FIXED; };
  Date.parse = NativeDate.parse;
  Date.UTC = NativeDate.UTC;
  try {
    Object.defineProperty(NativeDate.prototype, 'constructor',
                          {value: Date, writable: true, configurable: true});
  } catch (e) {}
  globalThis.Date = Date;
  if (globalThis.Intl && Intl.DateTimeFormat) {
    const proto = Intl.DateTimeFormat.prototype;
    const fmt = Object.getOwnPropertyDescriptor(proto, 'format');
    if (fmt && fmt.get) {
      const getFormat = fmt.get;
      Object.defineProperty(proto, 'format', {configurable: true, get() {
        const f = getFormat.call(this);
        return (d) => f(d === undefined ? FIXED : d);
      }});
    }
    const parts = proto.formatToParts;
    if (parts) proto.formatToParts = function formatToParts(d) {
      return parts.call(this, d === undefined ? FIXED : d);
    };
  }
  let s = %SEED% >>> 0;
  const next = () => {
    s = (s + 0x6D2B79F5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const define = (obj, name, value) => {
    try {
      Object.defineProperty(obj, name, {value, writable: true, configurable: true});
    } catch (e) {}
  };
  define(Math, 'random', next);
  const c = globalThis.crypto;
  if (c && c.getRandomValues) {
    const orig = c.getRandomValues.bind(c);
    const seeded = function getRandomValues(arr) {
      orig(arr);  // keeps the native argument checks (type, 65536-byte limit)
      const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(next() * 256);
      return arr;
    };
    define(c, 'getRandomValues', seeded);
    if (c.randomUUID) {
      const uuid = function randomUUID() {
        const b = seeded(new Uint8Array(16));
        b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
        const h = Array.from(b, x => x.toString(16).padStart(2, '0')).join('');
        return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
      };
      define(c, 'randomUUID', uuid);
    }
  }
  try {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(%CSS%);
    document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  } catch (e) {}
})();
"""

# Before a screenshot: the freeze style adopted again if the page dropped it (a page may assign
# document.adoptedStyleSheets, or replace its document), lazy images made eager. A constructed
# style sheet, never a <style> tag: no element in the page's DOM, and a page's
# Content-Security-Policy (style-src without 'unsafe-inline') does not apply to it, so the
# instrumentation never shows up as a CSP violation in the app's console.
_PREPARE_JS = r"""
(css) => {
  const ours = (sheet) => {
    try {
      const r = sheet.cssRules;
      return r.length === 1 && r[0].style && r[0].style.caretColor === 'transparent'
             && r[0].style.animationDuration === '1ms';
    } catch (e) { return false; }
  };
  if (!document.adoptedStyleSheets.some(ours)) {
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
      document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
    } catch (e) {}
  }
  let lazy = 0;
  for (const img of document.querySelectorAll('img[loading="lazy"], iframe[loading="lazy"]')) {
    img.loading = 'eager'; lazy++;
  }
  return {lazy, height: document.documentElement.scrollHeight, vh: window.innerHeight,
          x: window.scrollX, y: window.scrollY};
}
"""

_FINISH_ANIMATIONS_JS = r"""
() => {
  let n = 0;
  for (const a of document.getAnimations()) {
    try {
      const t = a.effect && a.effect.getComputedTiming ? a.effect.getComputedTiming() : null;
      if (t && Number.isFinite(t.endTime)) { a.finish(); n++; }
      else { a.pause(); a.currentTime = 0; n++; }
    } catch (e) {}
  }
  return n;
}
"""

_READY_JS = r"""
() => document.fonts.status === 'loaded'
      && Array.from(document.images).every(i => i.complete)
"""


def init_script(clock: datetime, seed: int) -> str:
    """The script injected into every frame: fixed clock, seeded randomness, the freeze style."""
    if clock.tzinfo is None:
        clock = clock.replace(tzinfo=UTC)
    millis = int(round(clock.timestamp() * 1000))
    return (_INIT_TEMPLATE.replace("%TIME%", str(millis))
            .replace("%SEED%", str(int(seed) & 0xFFFFFFFF))
            .replace("%CSS%", json.dumps(FREEZE_CSS)))


def prepare_context(context: BrowserContext, clock: datetime, seed: int) -> None:
    """Pin the clock and randomness of every page the context will open (before any page script)."""
    context.add_init_script(init_script(clock, seed))


def evaluate(page: Page, fn: str, arg: Any = None, *, timeout_ms: float = 5000) -> Any:
    """Run ``fn`` (a JS function source) in the page and return its JSON result, bounded in time.

    ``page.evaluate`` waits for ever on a page stuck in a loop; ``wait_for_function`` does not.
    """
    wrapper = f"(a) => ({{ v: ({fn})(a) }})"
    handle = page.wait_for_function(wrapper, arg=arg, timeout=max(1.0, timeout_ms), polling=100)
    try:
        value = handle.json_value()
    finally:
        try:
            handle.dispose()
        except PlaywrightError:
            pass
    return value.get("v") if isinstance(value, dict) else None


@dataclass
class NetworkTracker:
    """Counts the context's in-flight requests, to wait for the network to go quiet."""

    inflight: set[int] = field(default_factory=set)
    last_change: float = field(default_factory=time.monotonic)
    # id -> "METHOD url" of the requests in flight (what a step that timed out waited on)
    pending: dict[int, str] = field(default_factory=dict)

    def attach(self, context: BrowserContext) -> None:
        context.on("request", self._started)
        context.on("requestfinished", self._ended)
        context.on("requestfailed", self._ended)
        context.on("response", self._answered)

    def _started(self, request: Request) -> None:
        if request.resource_type in _LONG_LIVED:
            return
        self.inflight.add(id(request))
        if request.resource_type in _AWAITED or request.method != "GET":
            self.pending[id(request)] = f"{request.method} {request.url}"[:500]
        self.last_change = time.monotonic()

    def _ended(self, request: Request) -> None:
        self.inflight.discard(id(request))
        self.pending.pop(id(request), None)
        self.last_change = time.monotonic()

    def _answered(self, response: Response) -> None:
        # the server has answered (headers in): what is left is the body's transfer
        self.pending.pop(id(response.request), None)

    def unanswered(self) -> list[str]:
        """``METHOD url`` of the pages, API calls and form posts in flight now (at most 10):
        what a step waits on (images, fonts and scripts are left out)."""
        return list(self.pending.values())[:10]

    def wait_quiet(self, page: Page, deadline: float, quiet_ms: int = QUIET_MS) -> bool:
        """Wait until no request has been in flight for ``quiet_ms``; False at the deadline."""
        while True:
            now = time.monotonic()
            if not self.inflight and (now - self.last_change) * 1000 >= quiet_ms:
                return True
            if now >= deadline:
                return False
            page.wait_for_timeout(40)


def _remaining_ms(deadline: float) -> float:
    return max(0.0, (deadline - time.monotonic()) * 1000)


def settle(page: Page, network: NetworkTracker, *, budget_ms: float, full_page: bool) -> list[str]:
    """Wait for network quiet, fonts and images; freeze animations. Returns what did not settle."""
    deadline = time.monotonic() + min(budget_ms, SETTLE_BUDGET_MS) / 1000
    unsettled: list[str] = []
    network.wait_quiet(page, deadline)
    try:
        info = evaluate(page, _PREPARE_JS, FREEZE_CSS, timeout_ms=max(500, _remaining_ms(deadline)))
        if full_page and isinstance(info, dict):
            _scroll_through(page, info, deadline)
    except PlaywrightError:
        unsettled.append("page script")
    try:
        page.wait_for_function(_READY_JS, timeout=max(200, _remaining_ms(deadline)), polling=50)
    except PlaywrightError:
        unsettled.append("fonts/images")
    if not network.wait_quiet(page, deadline):
        unsettled.append("network")
    try:
        evaluate(page, _FINISH_ANIMATIONS_JS, timeout_ms=max(500, _remaining_ms(deadline)))
    except PlaywrightError:
        unsettled.append("animations")
    return unsettled


def _scroll_through(page: Page, info: dict[str, Any], deadline: float) -> None:
    """Scroll a tall page once from top to bottom (lazy loaders), then back where it was."""
    try:
        height, vh = float(info.get("height", 0)), float(info.get("vh", 0))
        x, y = float(info.get("x", 0)), float(info.get("y", 0))
    except (TypeError, ValueError):
        return
    if vh <= 0 or height <= vh:
        return
    steps = min(20, int(height // vh) + 1)
    for i in range(1, steps + 1):
        if time.monotonic() >= deadline:
            break
        evaluate(page, "(y) => window.scrollTo(0, y)", i * vh, timeout_ms=max(200, _remaining_ms(deadline)))
        page.wait_for_timeout(30)
    evaluate(page, "([x, y]) => window.scrollTo(x, y)", [x, y], timeout_ms=1000)


@dataclass
class Shot:
    png: bytes
    attempts: int
    stable: bool
    mask_boxes: list[Box] = field(default_factory=list)    # painted onto the last shot


_PAGE_SIZE_JS = r"""() => {
  const d = document.documentElement, b = document.body;
  return [Math.max(d.scrollWidth, b ? b.scrollWidth : 0, window.innerWidth),
          Math.max(d.scrollHeight, b ? b.scrollHeight : 0, window.innerHeight)];
}"""


@dataclass(frozen=True)
class Clip:
    """The top-left part of a page a full-page screenshot keeps when the whole page is larger
    than the pixel-area limit (``full``: the page's size, to say what was left out)."""

    width: int
    height: int
    full: tuple[int, int]

    def as_rect(self) -> FloatRect:
        return {"x": 0, "y": 0, "width": self.width, "height": self.height}


def area_clip(width: int, height: int, max_pixels: int) -> Clip | None:
    """None when ``width``×``height`` is within ``max_pixels``; else the largest top-left clip
    within it (the full width where possible, so what is kept is the top of the page)."""
    if width <= 0 or height <= 0 or width * height <= max_pixels:
        return None
    clip_w = min(width, max(1, max_pixels // min(height, 1024)))
    clip_h = max(1, min(height, max_pixels // clip_w))
    return Clip(clip_w, clip_h, (width, height))


def full_page_clip(page: Page, max_pixels: int, *, timeout_ms: float = 2000) -> Clip | None:
    """:func:`area_clip` of the page's current scroll size (CSS pixels)."""
    size = evaluate(page, _PAGE_SIZE_JS, timeout_ms=timeout_ms)
    try:
        width, height = int(size[0]), int(size[1])
    except (TypeError, ValueError, IndexError):
        return None
    return area_clip(width, height, max_pixels)


def stable_screenshot(page: Page, *, full_page: bool, timeout_ms: float,
                      mask_boxes: Callable[[], list[Box]] | None = None,
                      max_shots: int = MAX_SHOTS, clip: Clip | None = None) -> Shot:
    """Retake until two consecutive shots are byte-identical (at most ``max_shots`` shots).
    ``mask_boxes`` measures the masked elements right before each shot; they are painted onto
    the PNG (:mod:`diffie.browser.masks`), never into the page. ``clip``: keep only that part
    of a full-page shot (Chromium renders only that part)."""
    deadline = time.monotonic() + timeout_ms / 1000
    rect = clip.as_rect() if clip is not None else None
    boxes: list[Box] = []

    def take() -> bytes:
        nonlocal boxes
        boxes = mask_boxes() if mask_boxes is not None else []
        png = page.screenshot(
            full_page=full_page, animations="disabled", caret="hide", scale="css", type="png",
            timeout=max(1000, _remaining_ms(deadline)), clip=rect)
        return paint_masks(png, boxes)

    previous = take()
    attempts = 1
    while attempts < max_shots:
        page.wait_for_timeout(RETAKE_GAP_MS)
        current = take()
        attempts += 1
        if current == previous:
            return Shot(current, attempts, True, boxes)
        previous = current
    return Shot(previous, attempts, False, boxes)
