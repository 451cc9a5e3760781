"""Confine the browser to the app under test: every request and navigation of a context may go
to the side's own origin (the forwarded app port, or a URL-mode deployment) and to the
third-party origins the spec or the operator allows, and nowhere else.

The change is untrusted: its ``.diffie.yml`` chooses the steps and its app's JavaScript runs in
the browser, which lives on the worker host. Without a fence, ``location = "http://127.0.0.1:
6379/"`` or a redirect to the host's internal services would put their text into the verdict,
the trace and the screenshots. Two independent fences, each enough alone for what it covers:

1. **Routing** (:func:`confine_context`): a Playwright route on the context sees the URL of
   every request the browser starts (pages, frames, scripts, fetch/XHR, popups) and aborts the
   ones whose origin is not allowed, before they leave the browser. Playwright does not call a
   route again for the hops of a redirect, so it cannot see where a redirect goes.
2. **A dead proxy** (:class:`DeadProxy`): each context uses a proxy that refuses every
   connection, with the allowed origins as the only bypass rules (Playwright adds Chromium's
   ``<-loopback>``, so loopback is proxied too). Any connection to anything else (a redirect
   hop, a WebSocket, a worker's fetch, a preconnect) fails inside Chromium with
   ``ERR_PROXY_CONNECTION_FAILED``: no byte of another service is ever read.

Non-network schemes (``file:``, ``chrome:``, ``data:`` navigations) never reach either fence:
the spec only accepts paths for ``goto`` (:mod:`diffie.spec`), :func:`diffie.origins.check_navigation` refuses
anything else before a step navigates, and Chromium itself refuses a web page's navigation to
them. WebRTC is kept off non-proxied UDP by a launch flag.

Each blocked request is recorded (:class:`~diffie.capture.RequestIssue` with ``blocked``) and
becomes a ``blocked_request`` finding.
"""

from __future__ import annotations

import socket
from types import TracebackType

from playwright.sync_api import BrowserContext, Route
from playwright.sync_api import Error as PlaywrightError

from diffie.origins import OriginPolicy

# Flags for the launch: WebRTC may not send UDP outside the (dead) proxy.
LAUNCH_ARGS: tuple[str, ...] = (
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
)
BLOCKED_FAILURE = "blocked by Diffie: the origin is not the app's nor allowed"


def confine_context(context: BrowserContext, policy: OriginPolicy) -> None:
    """The route fence: abort every request of ``context`` whose origin is not allowed."""

    def gate(route: Route) -> None:
        request = route.request
        try:
            if policy.allows(request.url):
                route.fallback()
                return
            if len(policy.blocked) < 100:
                policy.blocked.append(f"{request.method} {request.url[:500]}")
            route.abort("blockedbyclient")
        except PlaywrightError:
            pass       # the page or context went away while the request was paused

    context.route("**/*", gate)


class DeadProxy:
    """A local TCP port that refuses every connection, for the context proxies.

    The socket is bound and never listens, so the port stays reserved for this process (nothing
    else on the host can start listening there and become the browser's proxy) and every
    connection to it is refused at once. Use as a context manager or call :meth:`close`.
    """

    def __init__(self) -> None:
        self._sock: socket.socket | None = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]

    @property
    def server(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> DeadProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
