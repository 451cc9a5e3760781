"""Logging for operators: every record carries the run it belongs to (``run_id``), as plain
text or as one JSON object per line (``DIFFIE_LOG_FORMAT=json``) for a log pipeline.

The run is taken from the record (``extra={"run_id": …}``) or else from the context the worker
sets around a run (:func:`run_context`). App text in a message stays a JSON string value: a
line of the app's console cannot forge a record.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(run_tag)s: %(message)s"
MAX_MESSAGE = 16000

current_run: ContextVar[str | None] = ContextVar("diffie_run_id", default=None)


@contextmanager
def run_context(run_id: str) -> Iterator[None]:
    """Records logged inside (this thread, or tasks copying its context) name ``run_id``."""
    token = current_run.set(run_id)
    try:
        yield
    finally:
        current_run.reset(token)


class RunFilter(logging.Filter):
    """Sets ``record.run_id`` (None outside a run) and ``record.run_tag`` (`` [run …]``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        run_id = getattr(record, "run_id", None) or current_run.get()
        record.run_id = run_id
        record.run_tag = f" [run {run_id}]" if run_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, run_id, host,
    pid, and the exception's traceback when there is one."""

    def __init__(self) -> None:
        super().__init__()
        self.host = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message[:MAX_MESSAGE],
            "run_id": getattr(record, "run_id", None) or current_run.get(),
            "host": self.host,
            "pid": record.process or os.getpid(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)[:MAX_MESSAGE]
        return json.dumps(entry, ensure_ascii=False)


def configure(fmt: str = "text", level: int = logging.WARNING) -> logging.Handler:
    """Route the root logger to stderr in ``fmt`` (``text`` or ``json``); replaces a handler
    this function installed before. Returns the handler."""
    if fmt not in ("text", "json"):
        raise ValueError(f"DIFFIE_LOG_FORMAT must be 'text' or 'json', not {fmt!r}")
    root = logging.getLogger()
    unconfigure()
    handler = logging.StreamHandler(sys.stderr)
    handler.diffie = True  # type: ignore[attr-defined]
    handler.addFilter(RunFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def unconfigure() -> None:
    """Remove the handler :func:`configure` installed (if any)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "diffie", False)]:
        root.removeHandler(old)
