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
import time
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from urllib.parse import urlparse

from playwright.sync_api import Browser, BrowserContext, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from diffie.artifacts import ArtifactDir, slug
from diffie.browser import confine, stabilise
from diffie.browser.recorder import Recorder, bound, short_error
from diffie.browser.steps import FlowRun, InfrastructureError
from diffie.capture import Capture, Side
from diffie.config import Settings
from diffie.control import FlowDone
from diffie.deps import FlowHooks
from diffie.errors import BrowserError
from diffie.origins import OriginError, OriginPolicy
from diffie.services import ServiceUrls
from diffie.spec import Flow, Spec, Viewport

LAUNCH_ARGS: tuple[str, ...] = (
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--font-render-hinting=none", "--hide-scrollbars",
    # determinism: without --disable-partial-raster a tile keeps pixels from earlier rasters and only
    # its invalidated part is redrawn, so the same page gave different bytes from run to run
    # (measured: 5 distinct screenshots in 5 runs of the sample shop's home page; 1 with it)
    "--disable-partial-raster", "--disable-checker-imaging", "--force-color-profile=srgb",
    "--disable-lcd-text",
    # robustness
    "--disable-dev-shm-usage", "--mute-audio",
    "--disable-features=Translate,MediaRouter,OptimizationHints,InterestFeedContentSuggestions",
    *confine.LAUNCH_ARGS,
)
_INSTALL_HINT = ("install Debian's Chromium (apt-get install chromium) or point DIFFIE_CHROMIUM_PATH "
                 "at a Chromium binary; `playwright install` is not needed")


class BrowserRunner:
    """One Chromium launch, reused for many flows. Use as a context manager."""

    def __init__(self, settings: Settings, *, route_fence: bool = True,
                 proxy_fence: bool = True) -> None:
        """``route_fence``/``proxy_fence``: the two confinement fences (see
        :mod:`diffie.browser.confine`); both are always on outside the tests that prove each one
        holds alone."""
        self.settings = settings
        self.route_fence, self.proxy_fence = route_fence, proxy_fence
        self._pw: Playwright | None = None
        self._browser: Browser | None = None
        self._dead_proxy: confine.DeadProxy | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> BrowserRunner:
        self._check_executable()
        self._dead_proxy = confine.DeadProxy()
        try:
            self._pw = sync_playwright().start()
        except PlaywrightError as exc:
            raise BrowserError(f"could not start Playwright: {short_error(exc)}") from exc
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
        if self._dead_proxy is not None:
            self._dead_proxy.close()
            self._dead_proxy = None

    def _check_executable(self) -> None:
        path = self.settings.chromium_path
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise BrowserError(f"Chromium not found at {path!r}: {_INSTALL_HINT}")

    def _launch(self) -> Browser:
        assert self._pw is not None
        path = self.settings.chromium_path
        self._check_executable()
        try:
            self._browser = self._pw.chromium.launch(
                executable_path=path, headless=True, args=list(LAUNCH_ARGS), chromium_sandbox=False,
                timeout=60_000)
        except PlaywrightError as exc:
            raise BrowserError(
                f"could not launch Chromium at {path!r}: {short_error(exc)}; {_INSTALL_HINT}") from exc
        return self._browser

    def _ensure_browser(self) -> Browser:
        if self._pw is None:
            raise BrowserError("BrowserRunner must be used as a context manager (with BrowserRunner(...))")
        if self._browser is None or not self._browser.is_connected():
            self._browser = None
            return self._launch()
        return self._browser

    # --- flows ----------------------------------------------------------------------------

    def run_all(self, spec: Spec, base_url: str | ServiceUrls, side: Side, out: ArtifactDir, *,
                clock: datetime, progress: Callable[[str], None] | None = None,
                hooks: FlowHooks | None = None) -> list[Capture]:
        """Every flow at each of its viewports, in spec order (:meth:`run_pair` each); a line
        to ``progress`` as each starts and as each ends (:class:`diffie.control.FlowDone`)."""
        captures: list[Capture] = []
        for flow in spec.flows:
            for viewport_name, viewport in spec.flow_viewports(flow):
                if progress:
                    progress(f"{side}: flow {flow.name} @ {viewport_name}")
                capture = self.run_pair(spec, flow, viewport_name, viewport, base_url, side, out,
                                        clock=clock, hooks=hooks, say=progress)
                captures.append(capture)
                if progress:
                    progress(FlowDone.of(capture).line())
        return captures

    def run_pair(self, spec: Spec, flow: Flow, viewport_name: str, viewport: Viewport,
                 base_url: str | ServiceUrls, side: Side, out: ArtifactDir, *, clock: datetime,
                 hooks: FlowHooks | None = None,
                 say: Callable[[str], None] | None = None) -> Capture:
        """One flow × viewport as the verdict sees it: ``hooks`` around it (the pipeline's VM
        reset and server evidence), and a second attempt when a step timed out while the server
        still owed an answer."""
        if hooks:
            hooks.before_flow(flow, viewport_name)
        capture = self.run_flow(spec, flow, viewport_name, viewport, base_url, side, out, clock=clock)
        waited = waited_on_server(capture)
        if waited:
            # The step timed out while the server still owed an answer: on a loaded
            # host (a VM under emulation) that is the machine's speed, not the change.
            # Run the flow once more; a slow endpoint is slow again and still fails.
            if say:
                say(f"{side}: flow {flow.name} @ {viewport_name}: {waited}; running the flow again")
            if hooks:
                hooks.before_flow(flow, viewport_name)     # the first attempt may have written
            again = self.run_flow(spec, flow, viewport_name, viewport, base_url, side, out,
                                  clock=clock)
            again.attempts = 2
            again.first_attempt = bound(waited, 1000)
            again.duration_ms = round(again.duration_ms + capture.duration_ms, 1)
            capture = again
        if hooks:
            hooks.after_flow(flow, viewport_name, capture)
        return capture

    def run_flow(self, spec: Spec, flow: Flow, viewport_name: str, viewport: Viewport,
                 base_url: str | ServiceUrls, side: Side, out: ArtifactDir, *, clock: datetime,
                 seed: int = 1) -> Capture:
        """Drive one flow at one viewport in a fresh context; never raises for app problems.
        ``base_url``: the side's app URL, or the URL of each of its services (every one an app
        origin of the context)."""
        started = time.perf_counter()
        capture = Capture(flow=flow.name, viewport=viewport_name, side=side)
        out.ensure()
        recorder = Recorder(capture)
        context: BrowserContext | None = None
        trace_name = slug(side, flow.name, viewport_name, "trace") + ".zip"
        browser = self._ensure_browser()        # BrowserError: nothing can be verified
        urls = ServiceUrls.of(base_url, spec.default_service)
        try:
            policy = OriginPolicy.for_app(list(urls.values()), spec.allowed_origins,
                                          self.settings.browser_allowed_origins)
        except OriginError as exc:
            raise BrowserError(str(exc)) from exc
        recorder.policy = policy
        proxy = policy.proxy(self._dead_proxy) if self.proxy_fence and self._dead_proxy else None
        try:
            context = browser.new_context(
                proxy=proxy,  # type: ignore[arg-type]
                viewport={"width": viewport.width, "height": viewport.height},
                screen={"width": viewport.width, "height": viewport.height},
                device_scale_factor=viewport.device_scale_factor, is_mobile=viewport.mobile,
                has_touch=viewport.mobile, locale="en-US", timezone_id="UTC", reduced_motion="reduce",
                color_scheme="light", service_workers="block", accept_downloads=False)
            if self.route_fence:
                confine.confine_context(context, policy)
            context.set_default_timeout(spec.timeout_ms)
            context.set_default_navigation_timeout(spec.timeout_ms)
            stabilise.prepare_context(context, clock, seed)
            if flow.signed_in:
                # on the flow's service's host (the default one's when this side has no such
                # service: the flow's first step that goes there fails, saying so)
                _add_cookies(context, spec, urls.resolve(flow.service) or urls.base_url)
            network = stabilise.NetworkTracker()
            network.attach(context)
            recorder.attach(context)
            context.tracing.start(screenshots=True, snapshots=True, sources=False,
                                  title=f"{side} {flow.name} @ {viewport_name}")
            page = context.new_page()
            page.on("crash", lambda _page: setattr(recorder, "crashed", True))
            flow_run = FlowRun(self, spec, flow, viewport_name, urls, side, out, page, network,
                               recorder, capture, policy)
            flow_run.run()
        except InfrastructureError as exc:
            capture.error = bound(str(exc), 1000)
            capture.completed = False
        except (PlaywrightError, BrowserError) as exc:
            capture.error = bound(f"browser failure: {short_error(exc)}", 1000)
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

def waited_on_server(capture: Capture) -> str | None:
    """Why a flow is worth a second attempt: its failed step timed out with requests still
    unanswered (None when it passed, failed for another reason, or the browser failed)."""
    failed = capture.failed_step()
    if capture.error or failed is None or not failed.pending_requests:
        return None
    return (f"step {failed.index} timed out waiting for the server "
            f"({', '.join(failed.pending_requests[:3])})")


def _add_cookies(context: BrowserContext, spec: Spec, base_url: str) -> None:
    parsed = urlparse(base_url)
    if not parsed.hostname:
        raise InfrastructureError(f"cannot set session cookies: base URL {base_url!r} has no host")
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
