"""``GET /v1/runs/{id}/events``: a run's progress as server-sent events.

Events, each ``data`` one JSON object on one line (text from the run is JSON-escaped, so a
progress line cannot start an event of its own):

- ``progress`` (``id`` = the line's number, 1-based): ``{"n", "line"}``, one per progress line
  of the run (:mod:`diffie.progress`: phases, flows, deploy output; from the database, so
  from whichever host runs it), bounded to :data:`LINE_CHARS`;
- ``status``: ``{"status", "phase"}`` whenever either changes;
- ``verdict``: the compact verdict (:mod:`diffie.compact`) once the run has finished; then
  the stream ends;
- ``reconnect``: the stream reached :data:`STREAM_MAX_S`; reconnect with ``Last-Event-ID``.

A client that reconnects with ``Last-Event-ID: N`` gets the progress lines after line N.
Comments (``: keep-alive``) keep proxies from closing a quiet stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool

from diffie.app_context import AppContext
from diffie.compact import compact
from diffie.models import FINISHED
from diffie.progress import ProgressReader
from diffie.submit import snapshot
from diffie.text import one_line

LINE_CHARS = 500
POLL_S = 0.5
KEEPALIVE_S = 15.0
STREAM_MAX_S = 1800.0


def event(kind: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, ensure_ascii=True)}\n\n"


async def run_event_stream(ctx: AppContext, run_id: str, *, seen: int = 0,
                           poll_s: float = POLL_S, keepalive_s: float = KEEPALIVE_S,
                           max_s: float = STREAM_MAX_S) -> AsyncIterator[str]:
    """The events of ``run_id`` from progress line ``seen`` on, until it finishes."""
    tail = ProgressReader(ctx.db, run_id, after=seen)
    start = last_sent = time.monotonic()
    state: tuple[str, str] | None = None
    while True:
        snap = await run_in_threadpool(snapshot, ctx, run_id)
        if snap is None:
            yield event("status", {"status": "error", "phase": "the run was deleted"})
            return
        for n, line in await run_in_threadpool(tail.read):
            yield event("progress", {"n": n, "line": one_line(line, LINE_CHARS)}, n)
            last_sent = time.monotonic()
        now = (str(snap["status"]), str(snap["phase"]))
        if now != state:
            state = now
            yield event("status", {"status": now[0], "phase": one_line(now[1], LINE_CHARS)})
            last_sent = time.monotonic()
        if snap["status"] in FINISHED:
            verdict = compact(snap, report=(snap.get("verdict") or {}).get("report_url"))
            yield event("verdict", verdict.model_dump(mode="json"))
            return
        if time.monotonic() - start > max_s:
            yield event("reconnect", {"last_event_id": tail.count})
            return
        if time.monotonic() - last_sent > keepalive_s:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(poll_s)
