"""A Celery worker in a thread of this process: for ``diffie serve`` and a lone ``diffie check``.

It is a real worker (same broker, same task, same acknowledgements) with the ``solo`` pool: one
run at a time, executed in the worker's thread. Stop it with :meth:`EmbeddedWorker.stop`
(a warm shutdown: the current run finishes first, unless ``wait`` is False).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery import Celery
from celery.worker import loops
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer

log = logging.getLogger(__name__)

# How long the worker's loop waits for a message before it looks at its stop flag again.
# Celery's blocking loop waits 2 s (and a polled broker, such as the embedded SQLite one,
# sleeps 1 s between polls): a lone `diffie verify` then spends ~3.7 s stopping its worker
# after the verdict is in, and up to 1 s before it picks the run up. 0.2 s: ~0.4 s.
DRAIN_S = 0.2


class _ShortDrains:
    """A broker connection whose ``drain_events`` waits at most :data:`DRAIN_S`."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def drain_events(self, timeout: float | None = None, **kwargs: Any) -> Any:
        return self._connection.drain_events(
            timeout=DRAIN_S if timeout is None else min(timeout, DRAIN_S), **kwargs)


def _quick_synloop(obj: Any, connection: Any, *args: Any, **kwargs: Any) -> Any:
    return loops.synloop(obj, _ShortDrains(connection), *args, **kwargs)


class _QuickConsumer(Consumer):
    """Celery's consumer, with the blocking loop (the solo pool's) waking every DRAIN_S."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        loop: Any = getattr(self, "loop", None)
        if loop is loops.synloop:
            self.loop = _quick_synloop


class EmbeddedWorker:
    def __init__(self, app: Celery, *, loglevel: str = "WARNING", name: str | None = None,
                 queues: list[str] | None = None) -> None:
        self.app = app
        self.queues = queues or [app.conf.task_default_queue]
        self.hostname = name or f"embedded-{self.queues[0]}-{os.getpid()}@{socket.gethostname()}"
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.worker: Any = None
        self.loglevel = loglevel
        self.error: BaseException | None = None

    def start(self, timeout: float = 60.0) -> EmbeddedWorker:
        ready = self._ready

        class _Controller(self.app.WorkController):  # type: ignore[name-defined]
            diffie_embedded = True
            diffie_queues = self.queues

            def on_consumer_ready(self, consumer: Any) -> None:
                ready.set()

        self.worker = _Controller(
            app=self.app, hostname=self.hostname, pool_cls="solo", concurrency=1,
            loglevel=self.loglevel, without_heartbeat=True, without_mingle=True,
            without_gossip=True, ready_callback=None,
            queues=self.queues, consumer_cls=_QuickConsumer)
        worker_state.should_stop = None
        worker_state.should_terminate = None

        # A retried task's countdown is kept by the worker's timer thread, which finds the task
        # through the process's default app (the worker's own thread uses its current app).
        self.app.set_default()

        def target() -> None:
            # Tasks find their app through the (thread-local) current app.
            self.app.set_current()
            try:
                self.worker.start()
            except BaseException as exc:      # surfaced by start()/stop()
                self.error = exc
                log.exception("embedded worker stopped with an error")
            finally:
                ready.set()

        self._thread = threading.Thread(target=target, name="diffie-embedded-worker",
                                        daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or self.error is not None:
            raise RuntimeError(f"the embedded worker did not start: {self.error!r}")
        return self

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, *, wait: bool = True, timeout: float = 60.0) -> None:
        """Warm shutdown (finish the current task) — or, with ``wait=False``, a cold one."""
        if self._thread is None:
            return
        if wait:
            worker_state.should_stop = 0
        else:
            worker_state.should_terminate = 0
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the embedded worker did not stop within %.0f s", timeout)
        else:
            worker_state.should_stop = None
            worker_state.should_terminate = None
        self._thread = None

    def __enter__(self) -> EmbeddedWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedWorkers:
    """The runs' embedded worker and, when ``publish``, a second one for the publish queue (so
    a GitHub check run is updated while a long verification holds the first)."""

    def __init__(self, app: Celery, *, publish: bool, loglevel: str = "WARNING") -> None:
        settings = app.diffie_settings
        self.runs = EmbeddedWorker(app, loglevel=loglevel, queues=[settings.queue_name])
        self.publish = (EmbeddedWorker(app, loglevel=loglevel, queues=[settings.publish_queue])
                        if publish else None)

    @property
    def hostname(self) -> str:
        return self.runs.hostname

    def start(self, timeout: float = 60.0) -> EmbeddedWorkers:
        # one after the other: a worker selects its queues on the app when it is built
        self.runs.start(timeout)
        if self.publish is not None:
            try:
                self.publish.start(timeout)
            except BaseException:
                self.runs.stop(wait=False)
                raise
        return self

    def stop(self, *, wait: bool = True, timeout: float = 60.0) -> None:
        self.runs.stop(wait=wait, timeout=timeout)
        if self.publish is not None:
            self.publish.stop(wait=wait, timeout=timeout)

    def __enter__(self) -> EmbeddedWorkers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
