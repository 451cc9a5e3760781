"""A run's progress lines where every host sees them: the worker that runs it appends each
line to the database as the job says it (the run folder's ``progress.log`` keeps them too, as
an artifact); the API's event stream (``/v1/runs/{id}/events``), the CLI's ``--wait`` and
MCP's ``wait`` read them from there, so progress shows with API and worker hosts apart.

Lines are numbered from 1 per run; a run taken again after its worker died goes on from the
last number (a reader that resumes with ``Last-Event-ID`` misses nothing and sees nothing
twice). A message with line breaks is stored as one line each; each line is bounded.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import func, select

from diffie.db import Database
from diffie.models import RunProgress

log = logging.getLogger(__name__)

LINE_MAX = 2000
FLUSH_S = 0.5
READ_MAX = 500          # lines a reader takes at a time


class ProgressWriter:
    """The worker's side: ``add`` writes the first line at once, then buffers and writes the
    buffer when ``flush_s`` has passed since the last write (``flush`` writes what is left).
    Thread-safe; never raises."""

    def __init__(self, db: Database, run_id: str, *, flush_s: float = FLUSH_S) -> None:
        self.db = db
        self.run_id = run_id
        self.flush_s = flush_s
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._last: float | None = None          # monotonic time of the last write
        self._next: int | None = None

    def add(self, message: str) -> None:
        lines = [line.rstrip("\r")[:LINE_MAX] for line in message.split("\n")]
        with self._lock:
            self._pending.extend(lines)
            due = self._last is None or time.monotonic() - self._last >= self.flush_s
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
            self._last = time.monotonic()
            if not lines:
                return
            try:
                with self.db.session() as s:
                    if self._next is None:
                        top = s.scalar(select(func.max(RunProgress.seq))
                                       .where(RunProgress.run_id == self.run_id))
                        self._next = int(top or 0) + 1
                    s.add_all(RunProgress(run_id=self.run_id, seq=self._next + i, line=line)
                              for i, line in enumerate(lines))
                self._next += len(lines)
            except Exception:
                log.exception("run %s: %d progress line(s) not recorded", self.run_id,
                              len(lines))


class ProgressReader:
    """A reader's side: ``read`` gives the lines after the last one it gave, as (number,
    line)."""

    def __init__(self, db: Database, run_id: str, after: int = 0) -> None:
        self.db = db
        self.run_id = run_id
        self.count = after

    def read(self) -> list[tuple[int, str]]:
        with self.db.session() as s:
            rows = s.execute(select(RunProgress.seq, RunProgress.line)
                             .where(RunProgress.run_id == self.run_id,
                                    RunProgress.seq > self.count)
                             .order_by(RunProgress.seq).limit(READ_MAX)).all()
        if rows:
            self.count = int(rows[-1][0])
        return [(int(seq), str(line)) for seq, line in rows]


def latest(db: Database, run_id: str) -> tuple[int, str]:
    """(the number of the run's last progress line, that line); (0, "") before the first."""
    with db.session() as s:
        row = s.execute(select(RunProgress.seq, RunProgress.line)
                        .where(RunProgress.run_id == run_id)
                        .order_by(RunProgress.seq.desc()).limit(1)).first()
    return (int(row[0]), str(row[1])) if row else (0, "")
