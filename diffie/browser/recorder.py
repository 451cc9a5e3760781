"""Turn Playwright's page events into Capture entries: bounded, capped, tagged with the step.

Everything here came from the page under test: untrusted. Text is cut to ``MAX_TEXT``, lists
stop at ``MAX_ENTRIES``, and nothing is used as a name or a path.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Request,
    Response,
    WebError,
    WebSocket,
)
from playwright.sync_api import Error as PlaywrightError

from diffie.browser.confine import BLOCKED_FAILURE
from diffie.capture import MAX_ENTRIES, MAX_TEXT, Capture, ConsoleEntry, PageError, RequestIssue
from diffie.origins import OriginPolicy
from diffie.redact import mask_secrets
from diffie.text import clip

_FRAME_RE = re.compile(r"(\S+?):(\d+):(\d+)\)?$")


def bound(text: str | None, limit: int = MAX_TEXT) -> str:
    return clip(text, limit)


def short_error(exc: BaseException) -> str:
    """Playwright's message without the API prefix and the call log, on one line."""
    message = getattr(exc, "message", None) or str(exc)
    message = message.split("\nCall log:")[0].split("\n=====")[0]
    message = re.sub(r"^\s*\w+\.\w+: ", "", message).strip()
    first = message.splitlines()[0] if message else type(exc).__name__
    return bound(first, 500)


SERVER_EVIDENCE_TYPES = frozenset({"document", "fetch", "xhr"})
MAX_SERVER_EVIDENCE = 10          # server errors per capture whose answer is kept
MAX_BODY = 2000                   # characters of a server error's body kept
KEPT_HEADERS = ("content-type", "content-length", "location", "retry-after", "server",
                "x-request-id", "x-correlation-id")


def server_answer(response: Response) -> tuple[dict[str, str], str | None]:
    """What the server answered with a server error: a few headers (never cookies) and the
    start of the body, secrets masked. Best effort: a body that is gone (the page navigated
    on) is None."""
    try:
        headers = response.headers
    except PlaywrightError:
        headers = {}
    kept = {k: mask_secrets(bound(headers[k], 300)) for k in KEPT_HEADERS if k in headers}
    body: str | None
    try:
        raw = response.body()[: MAX_BODY * 4]
        body = mask_secrets(bound(raw.decode("utf-8", "replace"), MAX_BODY))
    except PlaywrightError:
        body = None
    return kept, body


def top_frame(stack: str | None) -> tuple[str | None, int | None, int | None]:
    """The first stack frame that names a source URL: (url, line, column)."""
    for line in (stack or "").splitlines():
        line = line.strip()
        if not line.startswith("at "):
            continue
        match = _FRAME_RE.search(line)
        if match and "://" in match.group(1):
            return bound(match.group(1).lstrip("("), MAX_TEXT), int(match.group(2)), int(match.group(3))
    return None, None, None


class Recorder:
    """Turns the context's events into bounded Capture entries, tagged with the running step."""

    server_evidence = 0                # server errors whose answer was kept (bounded)

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.step: int | None = None
        self.crashed = False
        self.policy: OriginPolicy | None = None     # requests outside it are `blocked`

    def attach(self, context: BrowserContext) -> None:
        context.on("console", self.console)
        context.on("weberror", self.web_error)
        context.on("requestfailed", self.request_failed)
        context.on("response", self.response)
        context.on("page", lambda page: page.on("websocket", self.websocket))

    def websocket(self, ws: WebSocket) -> None:
        """A WebSocket to another origin: the proxy fence refuses its connection (Playwright's
        routes do not see WebSockets); recorded as a blocked request."""
        if self.policy is None or self.policy.allows(ws.url):
            return
        if len(self.capture.requests) >= MAX_ENTRIES:
            return
        self.capture.requests.append(RequestIssue(
            method="GET", url=bound(ws.url), failure=BLOCKED_FAILURE, resource_type="websocket",
            step=self.step, blocked=True))

    def console(self, msg: ConsoleMessage) -> None:
        if len(self.capture.console) >= MAX_ENTRIES:
            return
        loc: dict[str, Any] = dict(msg.location or {})
        url = bound(loc.get("url")) or None
        line, column = loc.get("lineNumber"), loc.get("columnNumber")
        if not (isinstance(line, int) and isinstance(column, int)) or not url or (line, column) == (0, 0):
            line = column = None   # no position ("Failed to load resource": url is the resource)
        else:
            line, column = line + 1, column + 1     # Chromium's are 0-based; stacks and editors 1-based
        self.capture.console.append(ConsoleEntry(
            type=bound(msg.type, 40), text=bound(msg.text), url=url, line=line, column=column,
            step=self.step))

    def web_error(self, web_error: WebError) -> None:
        if len(self.capture.page_errors) >= MAX_ENTRIES:
            return
        err = web_error.error
        stack = getattr(err, "stack", None) or None
        url, line, column = top_frame(stack)
        self.capture.page_errors.append(PageError(
            message=bound(getattr(err, "message", None) or str(err)),
            name=bound(getattr(err, "name", None), 200) or None,
            stack=bound(stack) or None, url=url, line=line, column=column, step=self.step))

    def request_failed(self, request: Request) -> None:
        if len(self.capture.requests) >= MAX_ENTRIES:
            return
        blocked = self.policy is not None and not self.policy.allows(request.url)
        failure = request.failure or "failed"
        if blocked:
            failure = f"{BLOCKED_FAILURE} ({failure})"
        self.capture.requests.append(RequestIssue(
            method=bound(request.method, 20), url=bound(request.url),
            failure=bound(failure, 500), resource_type=bound(request.resource_type, 40),
            step=self.step, blocked=blocked))

    def response(self, response: Response) -> None:
        if response.status < 400 or len(self.capture.requests) >= MAX_ENTRIES:
            return
        request = response.request
        issue = RequestIssue(
            method=bound(request.method, 20), url=bound(response.url), status=response.status,
            resource_type=bound(request.resource_type, 40), step=self.step)
        if response.status >= 500 and request.resource_type in SERVER_EVIDENCE_TYPES \
                and self.server_evidence < MAX_SERVER_EVIDENCE:
            self.server_evidence += 1
            issue.response_headers, issue.response_body = server_answer(response)
        self.capture.requests.append(issue)
