"""Callbacks: when a run that asked for one ends (``callback_url``, allowed by
:func:`diffie.submit_policy.check_callback`), a worker POSTs its result there — for systems
other than GitHub (a chat bot, a deploy gate, an agent's orchestrator).

The body is JSON: ``event`` (``run.finished``), ``run_id``, ``status`` (done, error, cancelled),
``verdict`` (pass, changed, fail, error or null), ``summary``, ``reason``, ``counts``,
``compact`` (the compact verdict: findings grouped by cause, bounded), ``report_url`` (a signed
link) and ``run_url``. Headers: ``X-Diffie-Event``, ``X-Diffie-Delivery`` (the run id: the
same delivery retried has the same id), ``X-Diffie-Timestamp`` (Unix seconds) and
``X-Diffie-Signature: sha256=HEX``, the HMAC-SHA256 of ``TIMESTAMP + "." + body`` keyed by
``DIFFIE_CALLBACK_SECRET`` (a receiver checks it and refuses old timestamps: no replay).

It is a :class:`~diffie.publishing.Publisher`: a 2xx answer delivers it; no answer, 408, 429 or
5xx is tried again (the destination's ``Retry-After``, else backoff; then the periodic sweep,
for a day); any other 4xx is the receiver saying no, and is not retried. Redirects are not
followed (a redirect could lead anywhere the operator did not allow).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from diffie import counters, links
from diffie.app_context import AppContext
from diffie.compact import compact
from diffie.config import Settings
from diffie.db import Database
from diffie.errors import Unavailable
from diffie.models import FINISHED, Run, utcnow

log = logging.getLogger(__name__)

TARGET = "callback"
EVENT = "run.finished"
TIMEOUT_S = 10.0
WINDOW = timedelta(days=1)          # the sweep retries a day's callbacks, no older
USER_AGENT = "Diffie-Callback/1"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *,
           max_age_s: float = 300, now: float | None = None) -> bool:
    """What a receiver does (Python): the signature matches and the timestamp is recent."""
    try:
        age = (time.time() if now is None else now) - int(timestamp)
    except ValueError:
        return False
    return abs(age) <= max_age_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


class CallbackPublisher:
    """The ``callback`` publisher, and the run listener that queues it when a run ends."""

    def __init__(self, db: Database, settings: Settings,
                 send: Callable[[str, str], None] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.send = send

    # RunListener
    def finished(self, run_id: str) -> None:
        if self.send is None:
            return
        with self.db.session() as s:
            wanted = s.scalar(select(Run.callback_url).where(Run.id == run_id))
        if wanted:
            self.send(run_id, "finished")

    # Publisher
    def publish(self, run_id: str, kind: str) -> str:
        with self.db.session() as s:
            run = s.get(Run, run_id)
            if run is None or not run.callback_url:
                return "no callback"
            if run.callback_sent_at is not None:
                return "already delivered"
            if run.status not in FINISHED:
                return "not finished"
            url = run.callback_url
            body = json.dumps(self._payload(run), separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "X-Diffie-Event": EVENT, "X-Diffie-Delivery": run_id,
                   "X-Diffie-Timestamp": timestamp,
                   "X-Diffie-Signature": sign(self.settings.callback_secret, timestamp, body)}
        try:
            resp = httpx.post(url, content=body, headers=headers, timeout=TIMEOUT_S,
                              follow_redirects=False)
        except httpx.HTTPError as exc:
            raise Unavailable(f"callback of run {run_id}: {type(exc).__name__}") from None
        if resp.status_code in (408, 429) or resp.status_code >= 500:
            error = Unavailable(f"callback of run {run_id}: HTTP {resp.status_code}")
            error.retry_after = _retry_after(resp)
            raise error
        outcome = "delivered" if 200 <= resp.status_code < 300 else "rejected"
        with self.db.session() as s:
            s.execute(update(Run).where(Run.id == run_id).values(callback_sent_at=utcnow())
                      .execution_options(synchronize_session=False))
        counters.bump(self.db, "callbacks", outcome)
        if outcome == "rejected":
            log.warning("run %s: the callback receiver answered HTTP %d; not retried",
                        run_id, resp.status_code)
        return f"{outcome} (HTTP {resp.status_code})"

    def pending(self, min_age_s: float) -> list[tuple[str, str]]:
        now = utcnow()
        settled = now - timedelta(seconds=min_age_s)
        with self.db.session() as s:
            ids = s.scalars(select(Run.id).where(
                Run.callback_url.is_not(None), Run.callback_sent_at.is_(None),
                Run.status.in_(FINISHED), Run.created_at >= now - WINDOW,
                Run.finished_at.is_(None) | (Run.finished_at <= settled))
                .order_by(Run.created_at).limit(100)).all()
        return [(run_id, "finished") for run_id in ids]

    def _payload(self, run: Run) -> dict[str, Any]:
        verdict: dict[str, Any] = dict(run.verdict or {})
        report = links.report_url(self.settings, run.id)
        snap = {"id": run.id, "status": run.status, "phase": run.phase, "reason": run.reason,
                "verdict_status": run.verdict_status, "verdict": verdict}
        return {
            "event": EVENT, "run_id": run.id, "status": run.status,
            "verdict": run.verdict_status, "summary": verdict.get("summary"),
            "reason": (run.reason or "")[:2000] or None, "counts": verdict.get("counts") or {},
            "compact": compact(snap, report=report).model_dump(mode="json"),
            "report_url": report, "run_url": links.api_url(self.settings, run.id),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        }


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return float(resp.headers.get("retry-after", ""))
    except ValueError:
        return None


def install(ctx: AppContext) -> CallbackPublisher | None:
    """Register the callback publisher on ``ctx`` when the operator allows callbacks."""
    settings = ctx.settings
    if not settings.callback_origins or not settings.callback_secret:
        return None

    def send(run_id: str, kind: str) -> None:
        ctx.publish(TARGET, run_id, kind)

    publisher = CallbackPublisher(ctx.db, settings, send=send)
    ctx.publishers[TARGET] = publisher
    ctx.events.subscribe(publisher)
    return publisher
