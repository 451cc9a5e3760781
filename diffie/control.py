"""How a running job reports progress and learns that it must stop: typed, not parsed strings.

The job (:func:`diffie.pipeline.run_change`) calls

- :meth:`RunControl.phase` at each phase boundary (checkout, deploy, every flow × viewport,
  compare, report): the heartbeat, the run's visible progress (``GET /v1/runs/{id}`` ``phase``)
  and the one place a cancelled or timed-out run stops (it raises :class:`RunCancelled`);
- :meth:`RunControl.say` for every other line (logs, ``progress.log``, the CLI's stderr): it
  never raises, so nothing deep in the sandbox or the browser is interrupted half-way.

Phases are short, stable strings: ``checkout``, ``check URLs``, ``deploy base``,
``browse head 3/8``, ``compare``, ``report``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from diffie.capture import Capture
from diffie.errors import RunError

log = logging.getLogger(__name__)


class RunCancelled(RunError):
    """The run was cancelled (or taken over, or hit its time limit) while it ran: stop."""


class RunControl(Protocol):
    def phase(self, name: str) -> None:
        """A phase starts: heartbeat; raises :class:`RunCancelled` when the run must stop."""
        ...

    def say(self, message: str) -> None:
        """One progress line; never raises."""
        ...


@dataclass(frozen=True)
class FlowDone:
    """One flow × viewport of one side finished (what the progress line and counters need)."""

    side: str
    flow: str
    viewport: str
    seconds: float
    outcome: str            # "ok", "step 3 failed: …" or "error: …"

    @classmethod
    def of(cls, capture: Capture) -> FlowDone:
        failed = capture.failed_step()
        outcome = (f"error: {capture.error}" if capture.error else
                   f"step {failed.index} failed: {failed.error}" if failed else "ok")
        return cls(capture.side, capture.flow, capture.viewport, capture.duration_ms / 1000,
                   outcome)

    def line(self) -> str:
        return f"{self.side}: flow {self.flow} @ {self.viewport}: {self.outcome} ({self.seconds:.1f} s)"


class Quiet:
    """A control that never cancels and says nothing (benchmarks and tests that only want the
    verdict)."""

    def phase(self, name: str) -> None:
        return None

    def say(self, message: str) -> None:
        return None


class Lines:
    """A control that hands every line to ``callback`` (phases as ``phase: NAME``): the CLI's
    stderr, a benchmark's timeline, a test's record. It never cancels."""

    def __init__(self, callback: Callable[[str], None]) -> None:
        self.callback = callback

    def phase(self, name: str) -> None:
        self.callback(f"phase: {name}")

    def say(self, message: str) -> None:
        self.callback(message)


def stamped(started: float, message: str) -> str:
    """A progress line as every reader shows it: ``[   12.3s] message`` (since ``started``,
    a ``time.monotonic()``)."""
    return f"[{time.monotonic() - started:7.1f}s] {message}"


class ProgressLog:
    """The job's side of a :class:`RunControl`: every line, timed, goes to the run's
    ``progress.log`` and the log, then to ``control``. Thread-safe (two browser lanes)."""

    def __init__(self, path: Path, control: RunControl) -> None:
        self.path = path
        self.control = control
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def _write(self, message: str) -> None:
        line = stamped(self.started, message)
        log.info("%s", line)
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def phase(self, name: str) -> None:
        self._write(f"phase: {name}")
        self.control.phase(name)

    def say(self, message: str) -> None:
        self._write(message)
        try:
            self.control.say(message)
        except Exception:          # a listener's failure is not the run's
            log.exception("progress listener failed")

    __call__ = say
