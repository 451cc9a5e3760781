"""``POST /webhooks/github``: signed deliveries in, queued runs out.

1. ``X-Hub-Signature-256`` must be the HMAC-SHA256 of the raw body under the webhook secret
   (constant-time compare); otherwise 401 and nothing is recorded.
2. ``ping`` is answered (200). Other events are parsed and decided by
   :mod:`diffie.github.events`; the decision is applied in one transaction together with the
   Delivery row, whose (hook id, delivery id) is unique: a replayed delivery answers
   ``duplicate`` and records nothing new.
3. Runs are enqueued after the transaction commits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from diffie import pull_requests
from diffie.api.deps import Ctx, invalid
from diffie.api.runs import enqueue_or_fail
from diffie.app_context import AppContext
from diffie.github.events import (
    ActionKind,
    PayloadError,
    PingEvent,
    decide,
    parse_event,
    verify_signature,
)
from diffie.models import Delivery

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])


@dataclass
class Outcome:
    status_code: int
    body: dict[str, Any]
    enqueue: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)      # cancelled runs (publishers update)
    approved: list[str] = field(default_factory=list)


class _Duplicate(Exception):
    pass


def _apply(ctx: AppContext, event_name: str, delivery_id: str, hook_id: str,
           body: bytes) -> Outcome:
    event = parse_event(event_name, body)
    action_name = getattr(event, "action", None)
    try:
        with ctx.db.session() as s:
            seen = s.scalars(select(Delivery.pk).where(Delivery.hook_id == hook_id,
                                                       Delivery.delivery_id == delivery_id))
            if seen.first() is not None:
                raise _Duplicate
            delivery = Delivery(hook_id=hook_id, delivery_id=delivery_id, event=event_name[:64],
                                action=action_name[:64] if action_name else None)
            s.add(delivery)
            try:
                s.flush()
            except IntegrityError:
                raise _Duplicate from None
            if isinstance(event, PingEvent):
                return Outcome(200, {"status": "pong", "zen": event.zen})
            action = decide(event, ctx.settings)
            out = Outcome(202, {"status": "ignored", "reason": action.reason})
            if action.kind == ActionKind.ENQUEUE and action.pull_request is not None:
                run_id, superseded = pull_requests.record_pull_request(
                    s, action.pull_request, supersede=action.supersede)
                delivery.run_id = run_id
                out = Outcome(202, {"status": "queued", "run_id": run_id,
                                    "superseded": superseded, "reason": action.reason},
                              enqueue=[run_id], finished=superseded)
            elif action.kind == ActionKind.CANCEL_PR_RUNS:
                cancelled = pull_requests.cancel_pr(s, action)
                out = Outcome(202, {"status": "cancelled", "runs": cancelled,
                                    "reason": action.reason}, finished=cancelled)
            elif action.kind == ActionKind.RERUN:
                run_id_or_none, superseded = pull_requests.rerun(s, action)
                if run_id_or_none is not None:
                    delivery.run_id = run_id_or_none
                    out = Outcome(202, {"status": "queued", "run_id": run_id_or_none,
                                        "superseded": superseded, "reason": action.reason},
                                  enqueue=[run_id_or_none], finished=superseded)
                else:
                    out.body["reason"] = f"{action.reason}: no run of Diffie's matches"
            elif action.kind == ActionKind.APPROVE:
                approved = pull_requests.approve(s, action)
                if approved is not None:
                    delivery.run_id = approved
                    out = Outcome(202, {"status": "approved", "run_id": approved,
                                        "reason": action.reason}, approved=[approved])
                else:
                    out.body["reason"] = f"{action.reason}: no run of Diffie's matches"
            return out
    except _Duplicate:
        return Outcome(200, {"status": "duplicate",
                             "detail": f"delivery {delivery_id} was already received"})


def _after_commit(ctx: AppContext, out: Outcome) -> None:
    for run_id in out.finished:
        ctx.events.finished(run_id)
    for run_id in out.approved:
        ctx.events.approved(run_id)
    for run_id in out.enqueue:
        enqueue_or_fail(ctx, run_id)


@router.post("/webhooks/github", status_code=202, summary="GitHub webhook deliveries",
             responses={200: {"description": "ping answered, or a duplicate delivery"},
                        401: {"description": "missing or wrong X-Hub-Signature-256"}})
async def github_webhook(request: Request, ctx: Ctx) -> JSONResponse:
    secret = ctx.settings.github_webhook_secret
    if not secret:
        raise HTTPException(503, "webhooks are disabled: DIFFIE_GITHUB_WEBHOOK_SECRET is not set")
    body = await request.body()
    if not verify_signature(secret, body, request.headers.get("x-hub-signature-256")):
        raise HTTPException(401, "missing or invalid X-Hub-Signature-256")
    event_name = request.headers.get("x-github-event", "").strip()
    delivery_id = request.headers.get("x-github-delivery", "").strip()
    hook_id = request.headers.get("x-github-hook-id", "").strip()
    if not event_name:
        raise invalid(("header", "X-GitHub-Event"), "Field required", "missing")
    if not delivery_id or len(delivery_id) > 128:
        raise invalid(("header", "X-GitHub-Delivery"), "Field required (at most 128 chars)",
                      "missing")
    try:
        out = await run_in_threadpool(_apply, ctx, event_name, delivery_id, hook_id[:64], body)
    except PayloadError as exc:
        raise invalid(("body",), str(exc), "payload_error") from None
    await run_in_threadpool(_after_commit, ctx, out)
    return JSONResponse(out.body, status_code=out.status_code)
