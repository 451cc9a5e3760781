"""Drive a spec's flows in Debian's Chromium and capture what happened (Playwright, sync API).

One :class:`BrowserRunner` launches Chromium once and runs many flows, each flow × viewport in a
fresh browser context (own cookies, storage, clock, trace). A failing step is recorded and ends
its flow; an infrastructure failure (browser crash) is recorded as ``Capture.error``. Nothing from
the page under test is trusted: text is bounded, lists are capped, and no name or path is ever
derived from it.

The sync API must be used from one thread and outside a running asyncio loop (a Celery worker
or the CLI): create, use and close the runner on the same thread.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlparse

from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Playwright,
    Request,
    Response,
    WebError,
    expect,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from diffie.artifacts import ArtifactDir, slug
from diffie.browser import elements, stabilise
from diffie.capture import (
    MAX_ENTRIES,
    MAX_TEXT,
    Capture,
    ConsoleEntry,
    PageError,
    RequestIssue,
    Screenshot,
    Side,
    StepResult,
)
from diffie.config import Settings
from diffie.errors import BrowserError
from diffie.spec import Flow, Spec, Step, Viewport

LAUNCH_ARGS: tuple[str, ...] = (
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--font-render-hinting=none", "--hide-scrollbars",
    # determinism and robustness
    "--force-color-profile=srgb", "--disable-lcd-text", "--disable-dev-shm-usage", "--mute-audio",
    "--disable-features=Translate,MediaRouter,OptimizationHints,InterestFeedContentSuggestions",
)

_NET_ERRORS: dict[str, str] = {
    "ERR_CONNECTION_REFUSED": "connection refused (is the app running on that port?)",
    "ERR_NAME_NOT_RESOLVED": "host name not resolved",
    "ERR_ADDRESS_UNREACHABLE": "address unreachable",
    "ERR_CONNECTION_TIMED_OUT": "connection timed out",
    "ERR_CONNECTION_RESET": "connection reset",
    "ERR_CONNECTION_CLOSED": "connection closed",
    "ERR_EMPTY_RESPONSE": "the server closed the connection without a response",
    "ERR_INTERNET_DISCONNECTED": "no network",
    "ERR_INVALID_URL": "invalid URL",
    "ERR_TOO_MANY_REDIRECTS": "too many redirects",
}
_CLOSED_MARKERS = ("Target page, context or browser has been closed", "Target crashed",
                   "Browser has been closed", "Browser closed", "Connection closed")
_FRAME_RE = re.compile(r"(\S+?):(\d+):(\d+)\)?$")
_VERBS = {"click": "click", "fill": "fill", "check": "check", "hover": "hover over",
          "select": "select an option in", "press": "press a key in"}


def _bound(text: str | None, limit: int = MAX_TEXT) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_error(exc: BaseException) -> str:
    """Playwright's message without the API prefix and the call log, on one line."""
    message = getattr(exc, "message", None) or str(exc)
    message = message.split("\nCall log:")[0].split("\n=====")[0]
    message = re.sub(r"^\s*\w+\.\w+: ", "", message).strip()
    first = message.splitlines()[0] if message else type(exc).__name__
    return _bound(first, 500)


def _top_frame(stack: str | None) -> tuple[str | None, int | None, int | None]:
    """The first stack frame that names a source URL: (url, line, column)."""
    for line in (stack or "").splitlines():
        line = line.strip()
        if not line.startswith("at "):
            continue
        match = _FRAME_RE.search(line)
        if match and "://" in match.group(1):
            return _bound(match.group(1).lstrip("("), MAX_TEXT), int(match.group(2)), int(match.group(3))
    return None, None, None


class _StepFailed(Exception):
    """A step did not do what the spec asked (the flow stops, the capture says why)."""


class _Infrastructure(Exception):
    """The browser, not the app, failed (crash, disconnect)."""


class _Recorder:
    """Turns the context's events into bounded Capture entries, tagged with the running step."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.step: int | None = None
        self.crashed = False

    def attach(self, context: BrowserContext) -> None:
        context.on("console", self.console)
        context.on("weberror", self.web_error)
        context.on("requestfailed", self.request_failed)
        context.on("response", self.response)

    def console(self, msg: ConsoleMessage) -> None:
        if len(self.capture.console) >= MAX_ENTRIES:
            return
        loc: dict[str, Any] = dict(msg.location or {})
        line, column = loc.get("lineNumber"), loc.get("columnNumber")
        self.capture.console.append(ConsoleEntry(
            type=_bound(msg.type, 40), text=_bound(msg.text), url=_bound(loc.get("url")) or None,
            line=line + 1 if isinstance(line, int) and loc.get("url") else None,      # 1-based, like stacks
            column=column + 1 if isinstance(column, int) and loc.get("url") else None,
            step=self.step))

    def web_error(self, web_error: WebError) -> None:
        if len(self.capture.page_errors) >= MAX_ENTRIES:
            return
        err = web_error.error
        stack = getattr(err, "stack", None) or None
        url, line, column = _top_frame(stack)
        self.capture.page_errors.append(PageError(
            message=_bound(getattr(err, "message", None) or str(err)),
            name=_bound(getattr(err, "name", None), 200) or None,
            stack=_bound(stack) or None, url=url, line=line, column=column, step=self.step))

    def request_failed(self, request: Request) -> None:
        if len(self.capture.requests) >= MAX_ENTRIES:
            return
        self.capture.requests.append(RequestIssue(
            method=_bound(request.method, 20), url=_bound(request.url),
            failure=_bound(request.failure or "failed", 500), resource_type=_bound(request.resource_type, 40),
            step=self.step))

    def response(self, response: Response) -> None:
        if response.status < 400 or len(self.capture.requests) >= MAX_ENTRIES:
            return
        request = response.request
        self.capture.requests.append(RequestIssue(
            method=_bound(request.method, 20), url=_bound(response.url), status=response.status,
            resource_type=_bound(request.resource_type, 40), step=self.step))


class BrowserRunner:
    """One Chromium launch, reused for many flows. Use as a context manager."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pw: Playwright | None = None
        self._browser: Browser | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> BrowserRunner:
        try:
            self._pw = sync_playwright().start()
        except PlaywrightError as exc:
            raise BrowserError(f"could not start Playwright: {_short_error(exc)}") from exc
        try:
            self._launch()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._browser is not None:
            try:
                self._browser.close()
            except PlaywrightError:
                pass
            self._browser = None
        if self._pw is not None:
            try:
                self._pw.stop()
            except PlaywrightError:
                pass
            self._pw = None

    def _launch(self) -> Browser:
        assert self._pw is not None
        path = self.settings.chromium_path
        hint = ("install Debian's Chromium (apt-get install chromium) or point DIFFIE_CHROMIUM_PATH "
                "at a Chromium binary; `playwright install` is not needed")
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise BrowserError(f"Chromium not found at {path!r}: {hint}")
        try:
            self._browser = self._pw.chromium.launch(
                executable_path=path, headless=True, args=list(LAUNCH_ARGS), chromium_sandbox=False,
                timeout=60_000)
        except PlaywrightError as exc:
            raise BrowserError(f"could not launch Chromium at {path!r}: {_short_error(exc)}; {hint}") from exc
        return self._browser

    def _ensure_browser(self) -> Browser:
        if self._pw is None:
            raise BrowserError("BrowserRunner must be used as a context manager (with BrowserRunner(...))")
        if self._browser is None or not self._browser.is_connected():
            self._browser = None
            return self._launch()
        return self._browser

    # --- flows ----------------------------------------------------------------------------

    def run_all(self, spec: Spec, base_url: str, side: Side, out: ArtifactDir, *, clock: datetime,
                progress: Callable[[str], None] | None = None) -> list[Capture]:
        """Every flow at each of its viewports, in spec order."""
        captures: list[Capture] = []
        for flow in spec.flows:
            for viewport_name, viewport in spec.flow_viewports(flow):
                if progress:
                    progress(f"{side}: flow {flow.name} @ {viewport_name}")
                capture = self.run_flow(spec, flow, viewport_name, viewport, base_url, side, out, clock=clock)
                captures.append(capture)
                if progress:
                    failed = capture.failed_step()
                    state = (f"error: {capture.error}" if capture.error else
                             f"step {failed.index} failed: {failed.error}" if failed else "ok")
                    progress(f"{side}: flow {flow.name} @ {viewport_name}: {state} "
                             f"({capture.duration_ms / 1000:.1f} s)")
        return captures

    def run_flow(self, spec: Spec, flow: Flow, viewport_name: str, viewport: Viewport, base_url: str,
                 side: Side, out: ArtifactDir, *, clock: datetime, seed: int = 1) -> Capture:
        """Drive one flow at one viewport in a fresh context; never raises for app problems."""
        started = time.perf_counter()
        capture = Capture(flow=flow.name, viewport=viewport_name, side=side)
        out.ensure()
        recorder = _Recorder(capture)
        context: BrowserContext | None = None
        trace_name = slug(side, flow.name, viewport_name, "trace") + ".zip"
        try:
            browser = self._ensure_browser()
            context = browser.new_context(
                viewport={"width": viewport.width, "height": viewport.height},
                screen={"width": viewport.width, "height": viewport.height},
                device_scale_factor=viewport.device_scale_factor, is_mobile=viewport.mobile,
                has_touch=viewport.mobile, locale="en-US", timezone_id="UTC", reduced_motion="reduce",
                color_scheme="light", service_workers="block", accept_downloads=False)
            context.set_default_timeout(spec.timeout_ms)
            context.set_default_navigation_timeout(spec.timeout_ms)
            stabilise.prepare_context(context, clock, seed)
            if flow.signed_in:
                _add_cookies(context, spec, base_url)
            network = stabilise.NetworkTracker()
            network.attach(context)
            recorder.attach(context)
            context.tracing.start(screenshots=True, snapshots=True, sources=False,
                                  title=f"{side} {flow.name} @ {viewport_name}")
            page = context.new_page()
            page.on("crash", lambda _page: setattr(recorder, "crashed", True))
            flow_run = _FlowRun(self, spec, flow, viewport_name, base_url, side, out, page, network,
                                recorder, capture)
            flow_run.run()
        except _Infrastructure as exc:
            capture.error = _bound(str(exc), 1000)
            capture.completed = False
        except (PlaywrightError, BrowserError) as exc:
            capture.error = _bound(f"browser failure: {_short_error(exc)}", 1000)
            capture.completed = False
        finally:
            if context is not None:
                capture.trace = _stop_trace(context, out, trace_name)
                try:
                    context.close()
                except PlaywrightError:
                    pass
        capture.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        return capture

    def browser_alive(self) -> bool:
        return self._browser is not None and self._browser.is_connected()


def _add_cookies(context: BrowserContext, spec: Spec, base_url: str) -> None:
    parsed = urlparse(base_url)
    if not parsed.hostname:
        raise _Infrastructure(f"cannot set session cookies: base URL {base_url!r} has no host")
    context.add_cookies([
        {"name": c.name, "value": c.value, "domain": parsed.hostname, "path": c.path,
         "secure": parsed.scheme == "https", "httpOnly": True, "sameSite": "Lax"}
        for c in spec.session_cookies])


def _stop_trace(context: BrowserContext, out: ArtifactDir, name: str) -> str | None:
    try:
        context.tracing.stop(path=out.path(name))
    except PlaywrightError:
        return None
    return name if out.path(name).is_file() else None


class _FlowRun:
    """The steps of one flow on one page."""

    def __init__(self, runner: BrowserRunner, spec: Spec, flow: Flow, viewport_name: str, base_url: str,
                 side: Side, out: ArtifactDir, page: Page, network: stabilise.NetworkTracker,
                 recorder: _Recorder, capture: Capture) -> None:
        self.runner, self.spec, self.flow, self.viewport_name = runner, spec, flow, viewport_name
        self.base_url, self.side, self.out, self.page = base_url, side, out, page
        self.network, self.recorder, self.capture = network, recorder, capture

    def run(self) -> None:
        for index, step in enumerate(self.flow.steps):
            self.recorder.step = index
            timeout = step.timeout_ms or self.spec.timeout_ms
            t0 = time.perf_counter()
            error: str | None = None
            try:
                self._step(index, step, timeout)
            except _StepFailed as exc:
                if self.recorder.crashed:
                    raise _Infrastructure(f"the page crashed (renderer process died) during step {index} "
                                          f"({step.describe()})") from exc
                error = str(exc)
            except PlaywrightError as exc:
                self._check_infrastructure(exc, index, step)
                error = _bound(f"{step.action} failed: {_short_error(exc)}", 1000)
            duration = round((time.perf_counter() - t0) * 1000, 1)
            self.capture.steps.append(StepResult(
                index=index, action=step.action, description=_bound(step.describe(), 500), ok=error is None,
                error=error, duration_ms=duration, line=step.line))
            if error is not None:
                self.capture.completed = False
                return

    def _check_infrastructure(self, exc: PlaywrightError, index: int, step: Step) -> None:
        message = getattr(exc, "message", "") or str(exc)
        if self.recorder.crashed:
            raise _Infrastructure(f"the page crashed (renderer process died) during step {index} "
                                  f"({step.describe()})") from exc
        if not self.runner.browser_alive() or any(m in message for m in _CLOSED_MARKERS):
            raise _Infrastructure(f"the browser went away during step {index} ({step.describe()}): "
                                  f"{_short_error(exc)}") from exc

    # --- one step -------------------------------------------------------------------------

    def _locator(self, selector: str) -> Locator:
        return self.page.locator(selector).first

    def _step(self, index: int, step: Step, timeout: int) -> None:
        action, sel = step.action, step.selector or ""
        try:
            if action == "goto":
                self._goto(step.url or "", timeout)
            elif action == "click":
                self._locator(sel).click(timeout=timeout)
            elif action == "fill":
                self._locator(sel).fill(step.value or "", timeout=timeout)
            elif action == "press":
                if sel:
                    self._locator(sel).press(step.key or "", timeout=timeout)
                else:
                    self.page.keyboard.press(step.key or "")
            elif action == "select":
                self._locator(sel).select_option(step.value or "", timeout=timeout)
            elif action == "check":
                self._locator(sel).check(timeout=timeout)
            elif action == "hover":
                self._locator(sel).hover(timeout=timeout)
            elif action in ("wait_for", "expect_visible"):
                state = step.state if action == "wait_for" else "visible"
                self._locator(sel).wait_for(state=state, timeout=timeout)
            elif action == "expect_text":
                self._expect_text(sel, step.text or "", timeout)
            elif action == "expect_url":
                self._expect_url(step.url or "", timeout)
            elif action == "screenshot":
                self._screenshot(index, step, timeout)
            else:  # pragma: no cover - the spec's Literal forbids it
                raise _StepFailed(f"unknown action {action!r}")
        except PlaywrightTimeout as exc:
            raise _StepFailed(self._timeout_message(step, sel, timeout)) from exc

    def _timeout_message(self, step: Step, sel: str, timeout: int) -> str:
        action = step.action
        if action == "goto":
            return f"page {self._url(step.url or '')} did not finish loading within {timeout} ms"
        if action == "screenshot":
            return f"screenshot {step.name!r} could not be taken within {timeout} ms (the page is busy)"
        if not sel:
            return f"{step.describe()} did not complete within {timeout} ms"
        if action == "wait_for" and step.state in ("hidden", "detached"):
            return f"selector {sel!r} did not become {step.state} within {timeout} ms"
        if not self._present(sel):
            return f"selector {sel!r} did not appear within {timeout} ms"
        if action in ("wait_for", "expect_visible"):
            return f"selector {sel!r} was found but did not become visible within {timeout} ms"
        verb = _VERBS.get(action, action)
        return (f"selector {sel!r} was found but could not {verb} it within {timeout} ms "
                f"(hidden, disabled or covered by another element)")

    def _present(self, sel: str) -> bool:
        try:
            self._locator(sel).wait_for(state="attached", timeout=200)
            return True
        except PlaywrightError:
            return False

    def _url(self, url: str) -> str:
        return urljoin(self.base_url, url)

    def _goto(self, url: str, timeout: int) -> None:
        target = self._url(url)
        try:
            self.page.goto(target, timeout=timeout, wait_until="load")
        except PlaywrightTimeout:
            raise
        except PlaywrightError as exc:
            message = getattr(exc, "message", "") or str(exc)
            code = re.search(r"net::(ERR_[A-Z_]+)", message)
            if code:
                reason = _NET_ERRORS.get(code.group(1), code.group(1).lower().replace("_", " "))
                raise _StepFailed(f"could not open {_bound(target, 500)}: {reason} "
                                  f"(net::{code.group(1)})") from exc
            raise

    def _expect_text(self, sel: str, text: str, timeout: int) -> None:
        locator = self._locator(sel)
        try:
            expect(locator).to_contain_text(text, timeout=timeout)
        except AssertionError as exc:
            if not self._present(sel):
                raise _StepFailed(f"selector {sel!r} did not appear within {timeout} ms") from exc
            try:
                actual = _bound(" ".join((locator.text_content(timeout=500) or "").split()), 200)
            except PlaywrightError:
                actual = "?"
            raise _StepFailed(
                f"text of {sel!r} did not contain {text!r} within {timeout} ms (it was {actual!r})") from exc

    def _expect_url(self, part: str, timeout: int) -> None:
        deadline = time.monotonic() + timeout / 1000
        while part not in self.page.url:
            if time.monotonic() >= deadline:
                raise _StepFailed(f"page URL did not contain {part!r} within {timeout} ms "
                                  f"(it was {_bound(self.page.url, 500)!r})")
            self.page.wait_for_timeout(50)

    def _screenshot(self, index: int, step: Step, timeout: int) -> None:
        name = step.name or f"step{index}"
        selectors = list(dict.fromkeys([*self.spec.masks, *step.mask]))
        mask = [self.page.locator(s) for s in selectors]
        stabilise.settle(self.page, self.network, budget_ms=timeout, full_page=step.full_page)
        shot = stabilise.stable_screenshot(self.page, full_page=step.full_page, mask=mask, timeout_ms=timeout)
        base = slug(self.side, self.flow.name, self.viewport_name, name)
        artifact = base + ".png"
        self.out.path(artifact).write_bytes(shot.png)
        width, height = _png_size(shot.png)
        record = Screenshot(name=name, step=index, artifact=artifact, width=width, height=height,
                            attempts=shot.attempts, stable=shot.stable)
        budget = min(timeout, 5000)
        try:
            record.mask_boxes = elements.mask_boxes(self.page, selectors, full_page=step.full_page,
                                                    timeout_ms=budget)
        except PlaywrightError:
            pass
        try:
            emap = elements.element_map(self.page, full_page=step.full_page, timeout_ms=budget)
            emap_name = base + "-elements.json"
            self.out.path(emap_name).write_bytes(elements.element_map_json(emap))
            record.elements = emap_name
        except PlaywrightError:
            pass
        self.capture.screenshots.append(record)


def _png_size(png: bytes) -> tuple[int, int]:
    if len(png) >= 24 and png[:8] == b"\x89PNG\r\n\x1a\n":
        return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    return 0, 0
