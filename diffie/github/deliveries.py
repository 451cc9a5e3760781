"""A GitHub delivery in the database: the Delivery row (its identity: hook and delivery id,
and the SHA-256 of its signed body) and the decision of :mod:`diffie.github.webhook_events`
applied to the pull request's runs (:mod:`diffie.github.pull_requests`), in one transaction.
The HTTP side (signature, status codes, queueing after commit) is :mod:`diffie.api.webhooks`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from diffie.app_context import AppContext
from diffie.github import pull_requests
from diffie.github.webhook_events import (
    Action,
    ActionKind,
    PingEvent,
    PullRequestEvent,
    decide,
    parse_event,
)
from diffie.models import Delivery, Run


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


def apply_delivery(ctx: AppContext, event_name: str, delivery_id: str, hook_id: str,
                   body: bytes) -> Outcome:
    """Record a delivery and apply its decision in one transaction (see
    :mod:`diffie.api.webhooks`); a replayed one is ``duplicate``."""
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


def take_back(ctx: AppContext, out: Outcome, run_id: str) -> None:
    """Undo what a delivery recorded when its run could not be queued, so that GitHub's
    redelivery (the same delivery id and body) is not a duplicate and runs."""
    with ctx.db.session() as s:
        pull_requests.undo_enqueue(s, run_id, authorized=out.authorized)
        if out.delivery_pk is not None:
            s.execute(delete(Delivery).where(Delivery.pk == out.delivery_pk))
