"""``POST /webhooks/github``: signed deliveries in, queued runs out.

1. ``X-Hub-Signature-256`` must be the HMAC-SHA256 of the raw body under the webhook secret
   (constant-time compare); otherwise 401 and nothing is recorded.
2. ``ping`` is answered (200). Other events are parsed and decided by
   :mod:`diffie.github.webhook_events`; the decision is applied in one transaction together with the
   Delivery row, whose (hook id, delivery id) is unique and so is the SHA-256 of its signed
   body: a replayed delivery answers ``duplicate`` and records nothing new, whatever its
   (unsigned) ``X-GitHub-Delivery``.
3. A ``pull_request`` delivery older than the newest head seen for its pull request (by
   ``pull_request.updated_at``) is ``ignored`` as a "stale head": it neither starts nor cancels
   a run.
4. A pull request that needs a maintainer's approval is recorded ``waiting`` (not queued); an
   "Authorize run" click is honoured only from someone with write, maintain or admin
   permission on the repository (asked of GitHub before the transaction).
5. Runs are enqueued after the transaction commits. When the broker refuses, the delivery and
   its run are taken back and the answer is 503: GitHub's redelivery (same delivery id) runs.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from diffie import pull_requests
from diffie.api.deps import Ctx, invalid
from diffie.app_context import AppContext
from diffie.errors import GitHubError, GitHubUnavailable
from diffie.github.webhook_events import (
    Action,
    ActionKind,
    PayloadError,
    PingEvent,
    PullRequestEvent,
    decide,
    parse_event,
    verify_signature,
)
from diffie.models import Delivery, Run

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])


@dataclass
class Outcome:
    status_code: int
    body: dict[str, Any]
    enqueue: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)      # cancelled runs (publishers update)
    approved: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    delivery_pk: int | None = None
    authorized: bool = False          # ``enqueue`` holds a run a maintainer let go


class _Duplicate(Exception):
    pass


def body_digest(event_name: str, body: bytes) -> str:
    """The identity of a delivery's signed content (the event name, then the raw body)."""
    return hashlib.sha256(event_name.encode() + b"\0" + body).hexdigest()


def _role(ctx: AppContext, action: Action) -> str:
    """The sender's role on the repository (GitHub is asked: outside any transaction)."""
    if ctx.permissions is None or action.installation_id is None:
        return "unknown"
    return ctx.permissions(action.installation_id, action.owner, action.repo, action.sender)


def _apply(ctx: AppContext, event_name: str, delivery_id: str, hook_id: str,
           body: bytes) -> Outcome:
    event = parse_event(event_name, body)
    action_name = getattr(event, "action", None)
    digest = body_digest(event_name, body)
    action = None if isinstance(event, PingEvent) else decide(event, ctx.settings)
    role = _role(ctx, action) if action is not None and action.kind == ActionKind.AUTHORIZE \
        else ""
    try:
        with ctx.db.session() as s:
            seen = s.scalars(select(Delivery.delivery_id).where(
                ((Delivery.hook_id == hook_id) & (Delivery.delivery_id == delivery_id))
                | (Delivery.body_sha256 == digest)))
            if seen.first() is not None:
                raise _Duplicate
            delivery = Delivery(hook_id=hook_id, delivery_id=delivery_id, event=event_name[:64],
                                action=action_name[:64] if action_name else None,
                                body_sha256=digest)
            s.add(delivery)
            try:
                s.flush()
            except IntegrityError:
                raise _Duplicate from None
            if isinstance(event, PingEvent) or action is None:
                assert isinstance(event, PingEvent)
                return Outcome(200, {"status": "pong", "zen": event.zen})
            out = Outcome(202, {"status": "ignored", "reason": action.reason},
                          delivery_pk=delivery.pk)
            stale = pull_requests.note_head(s, event) \
                if isinstance(event, PullRequestEvent) else None
            if stale is not None:
                out.body["reason"] = stale
            elif action.kind == ActionKind.ENQUEUE and action.pull_request is not None:
                run_id, superseded = pull_requests.record(
                    s, action.pull_request, supersede=action.supersede,
                    waiting=action.wait_for_approval, untrusted_head=action.untrusted_head)
                delivery.run_id = run_id
                if action.wait_for_approval:
                    out = Outcome(202, {"status": "waiting", "run_id": run_id,
                                        "superseded": superseded, "reason": action.reason},
                                  waiting=[run_id], finished=superseded)
                else:
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
                    if s.get(Run, run_id_or_none).status == "waiting":  # type: ignore[union-attr]
                        out = Outcome(202, {"status": "waiting", "run_id": run_id_or_none,
                                            "superseded": superseded,
                                            "reason": f"{action.reason}; the change still "
                                            "needs a maintainer's authorization"},
                                      waiting=[run_id_or_none], finished=superseded)
                    else:
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
            elif action.kind == ActionKind.AUTHORIZE:
                granted = pull_requests.authorize(s, action, role)
                if granted.run_id is not None:
                    delivery.run_id = granted.run_id
                    out = Outcome(202, {"status": "queued", "run_id": granted.run_id,
                                        "authorized_by": action.sender, "reason": action.reason},
                                  enqueue=[granted.run_id], authorized=True)
                else:
                    out.body.update(status="refused", reason=granted.refused)
            out.delivery_pk = delivery.pk
            return out
    except _Duplicate:
        return Outcome(200, {"status": "duplicate",
                             "detail": f"delivery {delivery_id} was already received"})


def _after_commit(ctx: AppContext, out: Outcome) -> None:
    for run_id in out.finished:
        ctx.events.finished(run_id)
    for run_id in out.approved:
        ctx.events.approved(run_id)
    for run_id in out.waiting:
        ctx.events.waiting(run_id)
    for run_id in out.enqueue:
        try:
            ctx.enqueue(run_id)
        except Exception as exc:
            log.exception("enqueue of run %s failed", run_id)
            _take_back(ctx, out, run_id)
            raise HTTPException(503, f"could not reach the queue ({type(exc).__name__}); "
                                "nothing was recorded: redeliver this delivery") from None
        ctx.events.queued(run_id)


def _take_back(ctx: AppContext, out: Outcome, run_id: str) -> None:
    """Undo what a delivery recorded when its run could not be queued, so that GitHub's
    redelivery (the same delivery id and body) is not a duplicate and runs."""
    with ctx.db.session() as s:
        pull_requests.undo_enqueue(s, run_id, authorized=out.authorized)
        if out.delivery_pk is not None:
            s.execute(delete(Delivery).where(Delivery.pk == out.delivery_pk))


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
    except GitHubUnavailable as exc:
        raise HTTPException(503, f"could not ask GitHub who clicked ({exc}); nothing was "
                            "recorded: click again or redeliver") from None
    except GitHubError as exc:
        raise HTTPException(502, f"GitHub refused to say who may authorize runs ({exc})") \
            from None
    await run_in_threadpool(_after_commit, ctx, out)
    return JSONResponse(out.body, status_code=out.status_code)
