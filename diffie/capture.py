"""What the browser saw while driving one flow at one viewport on one side (base or head).

Produced by :mod:`diffie.browser` (the only code importing Playwright) and consumed by
:mod:`diffie.compare`. Every string here came from the app under test: untrusted. The browser
bounds its size (see ``MAX_TEXT``); renderers escape it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

MAX_TEXT = 4000          # characters kept of one console message, error, URL or stack
MAX_ENTRIES = 500        # entries kept per list (console, errors, requests)

Side = Literal["base", "head", "head2"]


class Box(BaseModel):
    x: int
    y: int
    width: int
    height: int


class ConsoleEntry(BaseModel):
    type: str                         # log, info, warning, error, debug, ...
    text: str
    url: str | None = None            # source location of the call
    line: int | None = None
    column: int | None = None
    step: int | None = None           # index of the step that was running


class PageError(BaseModel):
    message: str
    name: str | None = None           # Error name (TypeError, ...)
    stack: str | None = None
    url: str | None = None            # top frame's source, when the stack names one
    line: int | None = None
    column: int | None = None
    step: int | None = None


class RequestIssue(BaseModel):
    method: str
    url: str
    status: int | None = None         # HTTP status when a response arrived (>= 400)
    failure: str | None = None        # network error text when none did
    resource_type: str = ""
    step: int | None = None
    blocked: bool = False             # outside the app's origin and the allowed ones: never sent
    # for a server error (>= 500) of a page, fetch or XHR: what the server answered (bounded,
    # secrets masked; untrusted text)
    response_headers: dict[str, str] | None = None
    response_body: str | None = None


class StepResult(BaseModel):
    index: int
    action: str
    description: str
    ok: bool
    error: str | None = None
    duration_ms: float = 0.0
    line: int | None = None           # line in .diffie.yml
    # Requests still unanswered when the step timed out: the step waited on the server.
    pending_requests: list[str] = Field(default_factory=list)
    screenshot: str | None = None     # artifact: the page at the moment the step failed


class Screenshot(BaseModel):
    name: str                          # the spec's screenshot name
    step: int
    artifact: str                      # file name inside the run's ArtifactDir
    width: int
    height: int
    attempts: int = 1                  # shots taken until two consecutive ones agreed
    stable: bool = True
    mask_boxes: list[Box] = Field(default_factory=list)   # page-coordinates of masked elements
    elements: str | None = None        # artifact name of a JSON list of visible elements:
                                       # [{selector, text, x, y, width, height}] (page coords)
    clipped_from: list[int] | None = None   # [width, height] of a full page larger than
                                            # DIFFIE_MAX_SCREENSHOT_PIXELS: only its top was kept


class Capture(BaseModel):
    flow: str
    viewport: str
    side: Side
    steps: list[StepResult] = Field(default_factory=list)
    console: list[ConsoleEntry] = Field(default_factory=list)
    page_errors: list[PageError] = Field(default_factory=list)
    requests: list[RequestIssue] = Field(default_factory=list)   # failed or status >= 400
    screenshots: list[Screenshot] = Field(default_factory=list)
    trace: str | None = None           # artifact name of trace.zip
    completed: bool = True             # False when a step failed and the flow stopped
    error: str | None = None           # infrastructure problem (browser crashed, ...)
    duration_ms: float = 0.0
    attempts: int = 1                  # 2: the flow was run again (see first_attempt)
    first_attempt: str | None = None   # why the first attempt did not count
    # The app's own log (the guest's journal of its services) while this flow ran, masked and
    # bounded; collected only when the flow failed or a request to the app did (repo mode).
    server_log: str | None = None

    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if not s.ok), None)
