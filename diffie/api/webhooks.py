"""``POST /webhooks/github``: signed deliveries in, queued runs out.

1. ``X-Hub-Signature-256`` must be the HMAC-SHA256 of the raw body under the webhook secret
   (constant-time compare); otherwise 401 and nothing is recorded.
2. ``ping`` is answered (200). Other events are parsed and decided by
   :mod:`diffie.github.webhook_events`; the decision is applied
   (:func:`diffie.github.deliveries.apply_delivery`) in one transaction together with the
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

import logging

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from diffie.api.deps import Ctx, invalid
from diffie.app_context import AppContext
from diffie.errors import GitHubError, GitHubUnavailable
from diffie.github import deliveries
from diffie.github.webhook_events import PayloadError, verify_signature

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])


def _after_commit(ctx: AppContext, out: deliveries.Outcome) -> None:
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
            deliveries.take_back(ctx, out, run_id)
            raise HTTPException(503, f"could not reach the queue ({type(exc).__name__}); "
                                "nothing was recorded: redeliver this delivery") from None
        ctx.events.queued(run_id)


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
        out = await run_in_threadpool(deliveries.apply_delivery, ctx, event_name, delivery_id,
                                      hook_id[:64], body)
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
