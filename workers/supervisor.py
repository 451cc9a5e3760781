"""A worker bootstep: liveness heartbeats, recovery of runs whose worker died, the periodic
publish sweep (:func:`diffie.publishing.sweep`, once per interval in the deployment), and (once,
at start) the sandbox reaper.

Every ``heartbeat_s`` the worker records itself in the ``workers`` table (so the CLI knows a
worker will take its run) and looks for runs left ``running`` with a stale heartbeat (their
worker was killed): they go back to ``queued`` and onto the queue again (``claim`` ends a run
``error`` once it has used up ``max_attempts``). Runs still ``queued`` long after they were
queued (``queued_stale_after_s``: the message was lost, or the claim failed) are enqueued again,
within the same ``max_attempts``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery import bootsteps

from diffie import publishing, run_store
from diffie.app_context import VERIFY_TASK
from diffie.sandbox.reaper import reap
from workers.tasks import worker_context

log = logging.getLogger(__name__)


def recover_stale(app: Any, ctx: Any) -> list[str]:
    """Requeue runs whose worker went silent, and runs no worker ever took (their broker
    message was lost, their claim hit a database error); returns the ids put on the queue."""
    settings = ctx.settings
    ids = run_store.requeue_stale(ctx.db, stale_after_s=settings.stale_after_s)
    for run_id in ids:
        log.warning("run %s: its worker stopped heartbeating; queued again", run_id)
    lost, gave_up = run_store.requeue_lost(ctx.db, queued_after_s=settings.queued_stale_after_s,
                                      max_attempts=settings.max_attempts)
    for run_id in lost:
        log.warning("run %s: queued for over %g s without a worker taking it; queued again",
                    run_id, settings.queued_stale_after_s)
    for run_id in gave_up:
        log.error("run %s: never taken by a worker; it ends error", run_id)
        ctx.events.finished(run_id)
    for run_id in ids + lost:
        app.send_task(VERIFY_TASK, args=[run_id], queue=settings.queue_name)
    return ids + lost


def reap_leftovers(ctx: Any) -> None:
    """VMs, overlays and slot leases left behind by a crashed worker on this host."""
    try:
        report = reap(ctx.settings, ctx.db)
    except Exception:
        log.exception("the sandbox reaper failed")
        return
    if report.domains or report.overlays or report.slots:
        log.warning("reaped what a dead worker left: %s", report.as_dict())
    elif report.errors:
        log.info("sandbox reaper: %s", "; ".join(report.errors))


def takes_runs(worker: Any, queue: str) -> bool:
    """Whether ``worker`` consumes the runs' queue (``-Q`` or an embedded worker's queues)."""
    queues = getattr(worker, "diffie_queues", None)
    if queues is None:
        consume_from = worker.app.amqp.queues.consume_from
        return not consume_from or queue in consume_from
    return queue in queues


class Supervisor(bootsteps.StartStopStep):
    """Runs in the worker's main process (not in pool children)."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.name = ""

    def start(self, worker: Any) -> None:
        settings = worker.app.diffie_settings
        if not takes_runs(worker, settings.queue_name):
            return            # a publish-only worker: it neither takes runs nor recovers them
        ctx = worker_context(settings, worker.app.diffie_build)
        embedded = bool(getattr(worker, "diffie_embedded", False))
        self.name = f"{worker.hostname}/{os.getpid()}"
        self._stop.clear()

        def loop() -> None:
            at_start = True
            while True:
                try:
                    run_store.worker_beat(ctx.db, self.name, hostname=socket.gethostname(),
                                     pid=os.getpid(), embedded=embedded)
                    recover_stale(worker.app, ctx)
                    publishing.sweep(ctx, self.name, at_start=at_start,
                                     interval_s=settings.github_sweep_interval_s)
                    at_start = False
                except Exception:
                    log.exception("worker supervisor round failed")
                if self._stop.wait(settings.heartbeat_s):
                    return

        self._thread = threading.Thread(target=loop, name="diffie-supervisor", daemon=True)
        self._thread.start()
        threading.Thread(target=reap_leftovers, args=(ctx,), name="diffie-reaper",
                         daemon=True).start()

    def stop(self, worker: Any) -> None:
        if not self.name:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            ctx = worker_context(worker.app.diffie_settings, worker.app.diffie_build)
            run_store.worker_gone(ctx.db, self.name)
        except Exception:
            log.exception("could not remove worker %s from the workers table", self.name)

    shutdown = stop
