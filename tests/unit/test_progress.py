"""Progress lines in the database (diffie.progress): numbered per run, a retried run goes on
from the last number, a reader resumes after what it saw, lines are bounded."""

from __future__ import annotations

from diffie.app_context import AppContext
from diffie.progress import LINE_MAX, ProgressReader, ProgressWriter, latest


def test_lines_are_numbered_resumable_and_bounded(ctx: AppContext) -> None:
    first = ProgressWriter(ctx.db, "run1", flush_s=3600)
    first.add("phase: deploy base")                                  # the first line at once
    assert ProgressReader(ctx.db, "run1").read() == [(1, "phase: deploy base")]
    first.add("two\r\nlines")
    assert ProgressReader(ctx.db, "run1", after=1).read() == []      # then buffered
    first.flush()
    reader = ProgressReader(ctx.db, "run1")
    assert reader.read() == [(1, "phase: deploy base"), (2, "two"), (3, "lines")]
    retry = ProgressWriter(ctx.db, "run1", flush_s=0)              # another worker took it
    retry.add("x" * (LINE_MAX + 50))
    assert reader.read() == [(4, "x" * LINE_MAX)]
    assert ProgressReader(ctx.db, "run1", after=3).read() == [(4, "x" * LINE_MAX)]
    assert latest(ctx.db, "run1") == (4, "x" * LINE_MAX) and latest(ctx.db, "other") == (0, "")
    ProgressWriter(ctx.db, "other", flush_s=0).add("its own")
    assert ProgressReader(ctx.db, "other").read() == [(1, "its own")]
