"""The steps of one flow on one page: goto, click, fill, ..., screenshot.

A step that does not do what the spec asked raises :class:`StepFailed` with a readable message
("selector '#buy' did not appear within 10000 ms"); the flow stops there. A browser that went
away raises :class:`InfrastructureError`.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from diffie.artifacts import ArtifactDir, slug
from diffie.browser import elements, stabilise
from diffie.browser.recorder import Recorder, bound, short_error
from diffie.capture import Box, Capture, Screenshot, Side, StepResult
from diffie.origins import Origin, OriginPolicy, check_navigation, origin_of
from diffie.services import ServiceUrls
from diffie.spec import Flow, Spec, Step

if TYPE_CHECKING:
    from diffie.browser.runner import BrowserRunner

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
CLOSED_MARKERS = ("Target page, context or browser has been closed", "Target crashed",
                  "Browser has been closed", "Browser closed", "Connection closed")
RESPONSIVE_MS = 1000  # a page that cannot run "() => 1" in this long has stopped responding
DRAIN_S = 1.5        # after the last step: wait this long at most for the network to go quiet
LEAVE_BUDGET_MS = 5000   # before a goto replaces the page: at most this long for what it loads
FAILURE_SHOT_MS = 3000          # the screenshot of a page whose step failed
_VERBS = {"click": "click", "fill": "fill", "check": "check", "hover": "hover over",
          "press": "press a key in"}


class StepFailed(Exception):
    """A step did not do what the spec asked (the flow stops, the capture says why)."""

    def __init__(self, message: str, *, pending: list[str] | None = None) -> None:
        super().__init__(message)
        self.pending = pending or []       # requests the page still waited on (a timeout)


class InfrastructureError(Exception):
    """The browser, not the app, failed (crash, disconnect)."""


def _short_request(pending: str) -> str:
    method, _, url = pending.partition(" ")
    path = urlsplit(url)
    return f"{method} {(path.path or '/') + ('?' + path.query if path.query else '')}"[:200]


def _waiting(pending: list[str]) -> str:
    if not pending:
        return ""
    return f"; still waiting for the server to answer {', '.join(_short_request(p) for p in pending[:3])}"


class FlowRun:
    """The steps of one flow on one page."""

    def __init__(self, runner: BrowserRunner, spec: Spec, flow: Flow, viewport_name: str,
                 urls: ServiceUrls, side: Side, out: ArtifactDir, page: Page,
                 network: stabilise.NetworkTracker, recorder: Recorder, capture: Capture,
                 policy: OriginPolicy) -> None:
        self.runner, self.spec, self.flow, self.viewport_name = runner, spec, flow, viewport_name
        self.urls, self.side, self.out, self.page = urls, side, out, page
        self.network, self.recorder, self.capture = network, recorder, capture
        self.policy = policy

    def run(self) -> None:
        for index, step in enumerate(self.flow.steps):
            timeout = step.timeout_ms or self.spec.timeout_ms
            if step.action == "goto" and index > 0:
                # still attributed to the step that loaded the page
                self._let_page_finish(index - 1, min(timeout / 2, LEAVE_BUDGET_MS))
            self.recorder.step = index
            t0 = time.perf_counter()
            error: str | None = None
            pending: list[str] = []
            try:
                self._step(index, step, timeout)
            except StepFailed as exc:
                if self.recorder.crashed:
                    raise InfrastructureError(f"the page crashed (renderer process died) during step "
                                              f"{index} ({step.describe()})") from exc
                error = str(exc)
                pending = exc.pending
            except PlaywrightError as exc:
                self._check_infrastructure(exc, index, step)
                error = bound(f"{step.action} failed: {short_error(exc)}", 1000)
            duration = round((time.perf_counter() - t0) * 1000, 1)
            self.capture.steps.append(StepResult(
                index=index, action=step.action, description=bound(step.describe(), 500), ok=error is None,
                error=error, duration_ms=duration, line=step.line, pending_requests=pending,
                screenshot=self._failure_shot(index) if error is not None else None))
            if error is not None:
                self.capture.completed = False
                return
        self._drain()

    def _failure_shot(self, index: int) -> str | None:
        """The page as it was when step ``index`` failed (no settling: what was there), as an
        artifact; None when the page cannot be shot (crashed, closed, stuck)."""
        if self.recorder.crashed:
            return None
        try:
            png = self.page.screenshot(timeout=FAILURE_SHOT_MS, animations="disabled",
                                       caret="hide", scale="css", type="png")
        except PlaywrightError:
            return None
        name = slug(self.side, self.flow.name, self.viewport_name, f"failed-step{index}") + ".png"
        self.out.path(name).write_bytes(png)
        return name

    def _let_page_finish(self, index: int, budget_ms: float) -> None:
        """Before a goto replaces the page: let it finish loading and answer what it asked for
        (bounded), so whether its requests are seen (a 500 from its API) does not depend on how
        fast the server was compared with the next step (a navigation aborts what is in flight)."""
        if self.page.url in ("", "about:blank"):
            return
        deadline = time.monotonic() + budget_ms / 1000
        try:
            self.page.wait_for_load_state("load", timeout=max(1.0, budget_ms))
            self.network.wait_quiet(self.page, deadline, quiet_ms=0)
        except PlaywrightTimeout:
            pass
        except PlaywrightError as exc:
            self._check_infrastructure(exc, index, self.flow.steps[index])

    def _drain(self) -> None:
        """Let late events in (an error thrown by a timer just after the last step, a slow fetch),
        so what is captured does not depend on how fast the last step returned. Bounded."""
        try:
            self.network.wait_quiet(self.page, time.monotonic() + DRAIN_S)
            self.page.wait_for_timeout(50)
        except PlaywrightError as exc:
            self._check_infrastructure(exc, len(self.flow.steps) - 1, self.flow.steps[-1])

    def _check_infrastructure(self, exc: PlaywrightError, index: int, step: Step) -> None:
        message = getattr(exc, "message", "") or str(exc)
        if self.recorder.crashed:
            raise InfrastructureError(f"the page crashed (renderer process died) during step {index} "
                                      f"({step.describe()})") from exc
        if not self.runner.browser_alive() or any(m in message for m in CLOSED_MARKERS):
            raise InfrastructureError(f"the browser went away during step {index} ({step.describe()}): "
                                      f"{short_error(exc)}") from exc

    # --- one step -------------------------------------------------------------------------

    def _locator(self, selector: str) -> Locator:
        return self.page.locator(selector).first

    def _step(self, index: int, step: Step, timeout: int) -> None:
        action, sel = step.action, step.selector or ""
        try:
            if action == "goto":
                self._goto(step.url or "", timeout, step.service)
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
                self._expect_url(step.url or "", timeout, step.service)
            elif action == "screenshot":
                self._screenshot(index, step, timeout)
            else:  # pragma: no cover - the spec's Literal forbids it
                raise StepFailed(f"unknown action {action!r}")
        except PlaywrightTimeout as exc:
            responsive = True
            pending = self.network.unanswered()
            if not pending:
                # a page that answers has had its events delivered (a request the step
                # started just before the deadline shows up now)
                responsive = self._responsive()
                pending = self.network.unanswered()
            raise StepFailed(self._timeout_message(step, sel, timeout, pending, responsive),
                             pending=pending) from exc

    def _timeout_message(self, step: Step, sel: str, timeout: int,
                         pending: list[str] | None = None, responsive: bool = True) -> str:
        action = step.action
        waiting = list(pending or [])
        if waiting and action in ("click", "press", "goto", "expect_url"):
            # a navigation the step started (a form POST, a page) had no answer yet: the page
            # is not busy, it waits on the server
            what = ", ".join(_short_request(p) for p in waiting[:3])
            return (f"{step.describe()} did not complete within {timeout} ms: still waiting for "
                    f"the server to answer {what}")
        if not responsive:
            return (f"{step.describe()} did not complete within {timeout} ms: the page stopped "
                    f"responding (a script is busy, perhaps in an endless loop)")
        if action == "goto":
            return (f"page {self._url(step.url or '', step.service)} did not finish loading "
                    f"within {timeout} ms")
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
        if action == "select":
            return (f"selector {sel!r} was found but option {step.value!r} could not be selected "
                    f"within {timeout} ms")
        verb = _VERBS.get(action, action)
        return (f"selector {sel!r} was found but could not {verb} it within {timeout} ms "
                f"(hidden, disabled or covered by another element)")

    def _responsive(self) -> bool:
        try:
            stabilise.evaluate(self.page, "() => 1", timeout_ms=RESPONSIVE_MS)
            return True
        except PlaywrightError:
            return False

    def _present(self, sel: str) -> bool:
        try:
            self._locator(sel).wait_for(state="attached", timeout=200)
            return True
        except PlaywrightError:
            return False

    def _service_url(self, service: str | None) -> str:
        """The URL of the step's service (None: the flow's). A service this side does not have
        (its revision's sandbox has no such service) fails the step."""
        name = service or self.flow.service
        url = self.urls.resolve(name)
        if url is None:
            raise StepFailed(f"this side has no service {name!r} (its services: "
                             f"{', '.join(self.urls)})")
        return url

    def _url(self, url: str, service: str | None = None) -> str:
        return urljoin(self._service_url(service), url)

    def _goto(self, url: str, timeout: int, service: str | None = None) -> None:
        target = self._url(url, service)
        refused = check_navigation(self.policy, target)
        if refused:
            raise StepFailed(f"goto refused: {refused}")
        try:
            self.page.goto(target, timeout=timeout, wait_until="load")
        except PlaywrightTimeout:
            raise
        except PlaywrightError as exc:
            message = getattr(exc, "message", "") or str(exc)
            code = re.search(r"net::(ERR_[A-Z_]+)", message)
            if code and code.group(1) in ("ERR_BLOCKED_BY_CLIENT", "ERR_PROXY_CONNECTION_FAILED"):
                raise StepFailed(f"could not open {bound(target, 500)}: it led outside the app's "
                                 f"{self.policy.app_label} (blocked, net::{code.group(1)})") from exc
            if code:
                reason = _NET_ERRORS.get(code.group(1), code.group(1).lower().replace("_", " "))
                raise StepFailed(f"could not open {bound(target, 500)}: {reason} "
                                 f"(net::{code.group(1)})") from exc
            raise

    def _expect_text(self, sel: str, text: str, timeout: int) -> None:
        locator = self._locator(sel)
        try:
            expect(locator).to_contain_text(text, timeout=timeout)
        except AssertionError as exc:
            pending = self.network.unanswered()
            if not self._present(sel):
                raise StepFailed(f"selector {sel!r} did not appear within {timeout} ms"
                                 f"{_waiting(pending)}", pending=pending) from exc
            actual = self._text_for_message(locator)
            raise StepFailed(
                f"text of {sel!r} did not contain {text!r} within {timeout} ms (it was {actual!r})"
                f"{_waiting(pending)}", pending=pending) from exc

    def _text_for_message(self, locator: Locator) -> str:
        """The element's text for a failure message: only from a page of the app's (or an
        allowed) origin; a page the browser may not read from is never quoted."""
        if not self.policy.allows(self.page.url):
            return f"not read: the page is outside the app's {self.policy.app_label}"
        try:
            return bound(" ".join((locator.text_content(timeout=500) or "").split()), 200)
        except PlaywrightError:
            return "?"

    def _expect_url(self, part: str, timeout: int, service: str | None = None) -> None:
        """The page URL contains ``part``; on one of the app's services, the expected one (the
        step's or the flow's): ``/orders`` on the API is not ``/orders`` on the front end."""
        expected = origin_of(self._service_url(service))
        deadline = time.monotonic() + timeout / 1000
        while not self._url_matches(part, expected):
            if time.monotonic() >= deadline:
                pending = self.network.unanswered()
                where = ""
                if part in self.page.url:
                    where = f" on service {service or self.flow.service or self.urls.default_name!r}"
                raise StepFailed(f"page URL did not contain {part!r}{where} within {timeout} ms "
                                 f"(it was {bound(self.page.url, 500)!r}){_waiting(pending)}",
                                 pending=pending)
            self.page.wait_for_timeout(50)

    def _url_matches(self, part: str, expected: Origin | None) -> bool:
        url = self.page.url
        if part not in url:
            return False
        # a page of another service of the app does not count; third-party pages (a payment
        # provider's, an allowed origin) are matched by the text alone, as before
        return not self.policy.is_app(url) or origin_of(url) == expected

    def _screenshot(self, index: int, step: Step, timeout: int) -> None:
        name = step.name or f"step{index}"
        selectors = list(dict.fromkeys([*self.spec.masks, *step.mask]))
        # one budget for the step: at most half of it (and SETTLE_BUDGET_MS) to settle, the rest to shoot
        deadline = time.monotonic() + timeout / 1000
        stabilise.settle(self.page, self.network, budget_ms=timeout / 2, full_page=step.full_page)
        # a full page larger than DIFFIE_MAX_SCREENSHOT_PIXELS keeps only its top (recorded)
        clip = (stabilise.full_page_clip(self.page, self.runner.settings.max_screenshot_pixels)
                if step.full_page else None)
        def boxes() -> list[Box]:
            return elements.mask_boxes(self.page, selectors, full_page=step.full_page,
                                       timeout_ms=min(timeout, 5000)) if selectors else []

        shot = stabilise.stable_screenshot(self.page, full_page=step.full_page, mask_boxes=boxes,
                                           timeout_ms=max(1000.0, (deadline - time.monotonic()) * 1000),
                                           clip=clip)
        base = slug(self.side, self.flow.name, self.viewport_name, name)
        artifact = base + ".png"
        self.out.path(artifact).write_bytes(shot.png)
        width, height = _png_size(shot.png)
        record = Screenshot(name=name, step=index, artifact=artifact, width=width, height=height,
                            attempts=shot.attempts, stable=shot.stable,
                            clipped_from=list(clip.full) if clip is not None else None,
                            mask_boxes=shot.mask_boxes)
        budget = min(timeout, 5000)
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
