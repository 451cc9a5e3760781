"""Publishing a run's result elsewhere (GitHub today) as queued, idempotent jobs.

A :class:`Publisher` converges one destination to a run's stored state: ``publish(run_id,
kind)`` reads the run and makes the destination say what the run says (safe to repeat, safe
after a newer event), raising :class:`~diffie.errors.Unavailable` when it must be tried again
later. Lifecycle events put a ``diffie.publish(target, run_id, kind)`` message on the publish
queue (:meth:`diffie.app_context.AppContext.publish`); a worker runs it
(:func:`deliver`), and retries it with the destination's backoff.

Whatever could not be published (an outage longer than the retries, a lost message) is found
by :func:`sweep`: the worker supervisor calls it every round, and one process of the deployment
at a time (a database lease per ``DIFFIE_GITHUB_SWEEP_INTERVAL_S``) asks each publisher for the
runs it still owes (``pending``, finished at least ``SWEEP_MIN_AGE_S`` ago, so a sweep never
races the finishing worker's own publish) and queues them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from diffie import counters, leases
from diffie.errors import Unavailable

if TYPE_CHECKING:
    from diffie.app_context import AppContext

log = logging.getLogger(__name__)

PUBLISH_TASK = "diffie.publish"
MAX_RETRIES = 12                 # then the periodic sweep takes over
MAX_RETRY_DELAY_S = 900.0
FIRST_RETRY_DELAY_S = 15.0
SWEEP_LEASE = "publish-sweep"
SWEEP_MIN_AGE_S = 60.0


class Publisher(Protocol):
    def publish(self, run_id: str, kind: str) -> str:
        """Make the destination show the run's stored state (``kind``: the lifecycle event that
        asked: waiting, queued, started, finished, approved); what was done."""
        ...

    def pending(self, min_age_s: float) -> list[tuple[str, str]]:
        """(run id, kind) the destination has not been given yet."""
        ...


def retry_delay(exc: Unavailable, attempt: int) -> float:
    """The destination's own ``retry_after`` when it gave one, else exponential backoff."""
    if exc.retry_after is not None and exc.retry_after > 0:
        return min(MAX_RETRY_DELAY_S, float(exc.retry_after))
    return min(MAX_RETRY_DELAY_S, FIRST_RETRY_DELAY_S * 2.0 ** attempt)


def deliver(ctx: AppContext, target: str, run_id: str, kind: str, *, attempt: int,
            retry: Callable[[float], Exception]) -> str:
    """Run one publish message: ``retry(delay)`` returns the exception that puts it back on the
    queue (Celery's ``Task.retry``)."""
    publisher = ctx.publishers.get(target)
    if publisher is None:
        log.error("publish %s of run %s: no %r publisher in this worker (is it configured "
                  "here as on the API?)", kind, run_id, target)
        return "no publisher"
    try:
        return publisher.publish(run_id, kind)
    except Unavailable as exc:
        if attempt >= MAX_RETRIES:
            log.error("%s: %s of run %s not published after %d attempts (%s); the periodic "
                      "sweep retries", target, kind, run_id, attempt + 1, exc)
            return "gave up"
        delay = retry_delay(exc, attempt)
        counters.bump(ctx.db, "publish_retries", target)
        log.warning("%s unavailable for %s of run %s (%s); retrying in %.0f s", target, kind,
                    run_id, exc, delay)
        raise retry(delay) from exc


def sweep(ctx: AppContext, holder: str, *, interval_s: float, at_start: bool = False,
          min_age_s: float | None = None) -> list[tuple[str, str, str]]:
    """Queue what the publishers still owe, at most once per ``interval_s`` in the whole
    deployment (whoever takes the lease first; ``interval_s`` 0: only when a worker starts,
    ``at_start``); (target, run id, kind) queued. Only runs finished ``min_age_s`` ago
    (default: ``SWEEP_MIN_AGE_S``, or the interval when shorter) are owed."""
    if min_age_s is None:
        min_age_s = min(SWEEP_MIN_AGE_S, interval_s) if interval_s > 0 else SWEEP_MIN_AGE_S
    if not ctx.publishers or (interval_s <= 0 and not at_start):
        return []
    if interval_s > 0 and not leases.take(ctx.db, SWEEP_LEASE, holder, interval_s, renew=False):
        return []
    queued = []
    for target, publisher in ctx.publishers.items():
        try:
            owed = publisher.pending(min_age_s)
        except Exception:
            log.exception("%s: finding unpublished runs failed", target)
            continue
        for run_id, kind in owed:
            ctx.publish(target, run_id, kind)
            queued.append((target, run_id, kind))
    if queued:
        log.info("publish sweep: queued %d unpublished result(s)", len(queued))
    return queued


def publish_inline(ctx: AppContext) -> None:
    """Publish in the caller's thread instead of through the queue (a test, a one-off tool):
    an unavailable destination is logged, and left to :func:`sweep`."""

    def now(target: str, run_id: str, kind: str) -> None:
        publisher = ctx.publishers.get(target)
        if publisher is None:
            return
        try:
            publisher.publish(run_id, kind)
        except Unavailable as exc:
            log.warning("%s unavailable for %s of run %s (%s); left to the sweep", target, kind,
                        run_id, exc)

    ctx.publish_fn = now
