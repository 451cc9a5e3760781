"""Run lifecycle events: where publishers (GitHub check runs and comments, ...) plug in.

The API and the worker call :class:`EventBus` at each transition; a listener never breaks a
run (its exceptions are logged and swallowed). Register listeners on the app context::

    ctx.events.subscribe(MyPublisher(ctx))

A listener implements any of ``waiting``, ``queued``, ``started``, ``finished``, ``approved``
(see :class:`RunListener`);
each receives the run id and loads what it needs from the database itself, so a publisher that
runs late (GitHub was down) sees the same thing as one that ran at once.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


@runtime_checkable
class RunListener(Protocol):
    def waiting(self, run_id: str) -> None: ...         # recorded, waits for authorization
    def queued(self, run_id: str) -> None: ...          # recorded and enqueued (API, webhook)
    def started(self, run_id: str) -> None: ...         # a worker claimed it
    def finished(self, run_id: str) -> None: ...        # done, error or cancelled
    def approved(self, run_id: str) -> None: ...        # visual changes approved (re-publish)


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[object] = []

    def subscribe(self, listener: object) -> None:
        self._listeners.append(listener)

    def close(self) -> None:
        """Stop the listeners that have a ``close()`` (background publishers, their timers)."""
        for listener in list(self._listeners):
            close = getattr(listener, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("closing run listener %r failed", listener)

    def _emit(self, event: str, run_id: str) -> None:
        for listener in list(self._listeners):
            handler = getattr(listener, event, None)
            if handler is None:
                continue
            try:
                handler(run_id)
            except Exception:
                log.exception("run listener %r failed on %s(%s)", listener, event, run_id)

    def waiting(self, run_id: str) -> None:
        self._emit("waiting", run_id)

    def queued(self, run_id: str) -> None:
        self._emit("queued", run_id)

    def started(self, run_id: str) -> None:
        self._emit("started", run_id)

    def finished(self, run_id: str) -> None:
        self._emit("finished", run_id)

    def approved(self, run_id: str) -> None:
        self._emit("approved", run_id)
