"""Webhook payloads as typed events, and what the router should do with each.

``parse_event(event_name, payload)`` turns a delivery (the ``X-GitHub-Event`` header and the
JSON body) into a :class:`PullRequestEvent`, :class:`CheckRunEvent`, :class:`CheckSuiteEvent`,
:class:`PingEvent` or :class:`OtherEvent`. ``decide(event, settings)`` answers with an
:class:`Action`: enqueue a run, cancel a pull request's runs, re-run, approve, or ignore.
``verify_signature`` checks ``X-Hub-Signature-256``.

Trust (:mod:`diffie.github.trust`): a pull request that needs a maintainer's approval is
enqueued as ``waiting``; its check run offers "Authorize run" (``AUTHORIZE_IDENTIFIER``), whose
``check_run.requested_action`` becomes an AUTHORIZE action checked against the sender's
permission by the router.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from diffie.config import Settings
from diffie.errors import DiffieError
from diffie.github import trust

CHECK_NAME = "Diffie"
APPROVE_IDENTIFIER = "approve"
AUTHORIZE_IDENTIFIER = "authorize"

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")

# pull_request actions that put (new) code in front of Diffie
PR_RUN_ACTIONS = frozenset({"opened", "synchronize", "reopened", "ready_for_review"})


class PayloadError(DiffieError, ValueError):
    """A webhook body is not what GitHub documents (missing or malformed field)."""


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` (``X-Hub-Signature-256: sha256=<hex>``) is the HMAC-SHA256 of the
    raw ``body`` under ``secret``. Constant-time compare; False when anything is missing."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256="):].strip().lower())


# -- events ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PullRef:
    """A pull request as listed in check_run / check_suite payloads."""

    number: int
    head_sha: str
    base_sha: str


@dataclass(frozen=True)
class PullRequestEvent:
    action: str
    installation_id: int
    owner: str
    repo: str
    number: int
    base_sha: str
    head_sha: str
    head_clone_url: str | None     # None when the fork was deleted
    base_clone_url: str
    is_fork: bool
    draft: bool
    title: str
    base_ref: str = ""
    head_ref: str = ""
    merged: bool = False
    author: str = ""
    author_association: str = ""   # OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, FIRST_TIMER, ...
    updated_at: datetime | None = None   # the pull request's, when GitHub sent the delivery
    base_changed: bool = False     # ``edited`` with ``changes.base``: retargeted to a new base


@dataclass(frozen=True)
class CheckRunEvent:
    action: str                    # created | completed | rerequested | requested_action
    installation_id: int
    owner: str
    repo: str
    check_run_id: int
    name: str
    head_sha: str
    external_id: str               # Diffie's run id, for check runs Diffie created
    app_id: int | None
    pull_requests: tuple[PullRef, ...] = ()
    app_client_id: str | None = None       # newer payloads name the app by client ID too
    requested_action: str | None = None    # the button's identifier (requested_action)
    sender: str = ""                       # who clicked (the delivery's sender.login)


@dataclass(frozen=True)
class CheckSuiteEvent:
    action: str                    # requested | rerequested | completed
    installation_id: int
    owner: str
    repo: str
    check_suite_id: int
    head_sha: str
    head_branch: str | None
    app_id: int | None
    pull_requests: tuple[PullRef, ...] = ()
    app_client_id: str | None = None


@dataclass(frozen=True)
class PingEvent:
    zen: str
    hook_id: int | None
    app_id: int | None


@dataclass(frozen=True)
class OtherEvent:
    name: str
    action: str | None


Event = PullRequestEvent | CheckRunEvent | CheckSuiteEvent | PingEvent | OtherEvent


def _get(data: Any, dotted: str) -> Any:
    cur = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise PayloadError(f"webhook payload has no {dotted}")
        cur = cur[part]
    return cur


def _str(data: Any, dotted: str) -> str:
    value = _get(data, dotted)
    if not isinstance(value, str):
        raise PayloadError(f"webhook payload field {dotted} is not a string")
    return value


def _int(data: Any, dotted: str) -> int:
    value = _get(data, dotted)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"webhook payload field {dotted} is not an integer")
    return value


def _sha(data: Any, dotted: str) -> str:
    value = _str(data, dotted)
    if not _SHA.match(value):
        raise PayloadError(f"webhook payload field {dotted} is not a commit SHA")
    return value


def _repo(data: Any) -> tuple[str, str]:
    owner, name = _str(data, "repository.owner.login"), _str(data, "repository.name")
    for value in (owner, name):
        if not _NAME.match(value) or value in (".", ".."):
            raise PayloadError(f"webhook payload has an invalid repository name {value!r}")
    return owner, name


def _opt_int(data: Any, dotted: str) -> int | None:
    try:
        return _int(data, dotted)
    except PayloadError:
        return None


def _opt_str(data: Any, dotted: str) -> str | None:
    try:
        value = _get(data, dotted)
    except PayloadError:
        return None
    return value if isinstance(value, str) and value else None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(f"webhook payload field pull_request.updated_at is not a time: "
                           f"{value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise PayloadError("webhook payload field pull_request.updated_at has no time zone")
    return parsed


def _login(data: Any, key: str) -> str:
    user = data.get(key) if isinstance(data, dict) else None
    login = user.get("login") if isinstance(user, dict) else None
    return login[:200] if isinstance(login, str) else ""


def _pull_refs(items: Any) -> tuple[PullRef, ...]:
    refs = []
    for item in items or []:
        try:
            refs.append(PullRef(_int(item, "number"), _sha(item, "head.sha"),
                                _sha(item, "base.sha")))
        except PayloadError:
            continue
    return tuple(refs)


def parse_event(event_name: str, payload: bytes | str | dict[str, Any]) -> Event:
    """The typed event of one delivery. Raises :class:`PayloadError` on a malformed body."""
    if isinstance(payload, bytes | str):
        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise PayloadError(f"webhook body is not JSON: {exc}") from None
    else:
        data = payload
    if not isinstance(data, dict):
        raise PayloadError("webhook body is not a JSON object")
    action = data.get("action") if isinstance(data.get("action"), str) else None

    if event_name == "ping":
        return PingEvent(zen=str(data.get("zen", "")), hook_id=_opt_int(data, "hook_id"),
                         app_id=_opt_int(data, "hook.app_id"))
    if event_name == "pull_request" and action is not None:
        owner, repo = _repo(data)
        pr = _get(data, "pull_request")
        head_repo = pr.get("head", {}).get("repo") if isinstance(pr.get("head"), dict) else None
        base_full = _str(data, "pull_request.base.repo.full_name")
        head_full = head_repo.get("full_name") if isinstance(head_repo, dict) else None
        head_url = head_repo.get("clone_url") if isinstance(head_repo, dict) else None
        return PullRequestEvent(
            action=action, installation_id=_int(data, "installation.id"), owner=owner,
            repo=repo, number=_int(data, "pull_request.number"), base_sha=_sha(data, "pull_request.base.sha"),
            head_sha=_sha(data, "pull_request.head.sha"),
            head_clone_url=head_url if isinstance(head_url, str) else None,
            base_clone_url=_str(data, "pull_request.base.repo.clone_url"),
            is_fork=head_full is None or head_full.lower() != base_full.lower(),
            draft=bool(pr.get("draft", False)), title=str(pr.get("title") or ""),
            base_ref=str(pr.get("base", {}).get("ref") or ""),
            head_ref=str(pr.get("head", {}).get("ref") or ""),
            merged=bool(pr.get("merged", False)), author=_login(pr, "user"),
            author_association=str(pr.get("author_association") or "")[:64],
            updated_at=_timestamp(pr.get("updated_at")),
            base_changed=isinstance(data.get("changes"), dict)
            and isinstance(data["changes"].get("base"), dict))
    if event_name == "check_run" and action is not None:
        owner, repo = _repo(data)
        cr = _get(data, "check_run")
        requested = data.get("requested_action")
        return CheckRunEvent(
            action=action, installation_id=_int(data, "installation.id"), owner=owner,
            repo=repo, check_run_id=_int(data, "check_run.id"), name=_str(data, "check_run.name"),
            head_sha=_sha(data, "check_run.head_sha"), external_id=str(cr.get("external_id") or ""),
            app_id=_opt_int(cr, "app.id"), pull_requests=_pull_refs(cr.get("pull_requests")),
            app_client_id=_opt_str(cr, "app.client_id"),
            requested_action=(str(requested.get("identifier", ""))
                              if isinstance(requested, dict) else None),
            sender=_login(data, "sender"))
    if event_name == "check_suite" and action is not None:
        owner, repo = _repo(data)
        cs = _get(data, "check_suite")
        branch = cs.get("head_branch")
        return CheckSuiteEvent(
            action=action, installation_id=_int(data, "installation.id"), owner=owner,
            repo=repo, check_suite_id=_int(data, "check_suite.id"),
            head_sha=_sha(data, "check_suite.head_sha"),
            head_branch=branch if isinstance(branch, str) else None,
            app_id=_opt_int(cs, "app.id"), pull_requests=_pull_refs(cs.get("pull_requests")),
            app_client_id=_opt_str(cs, "app.client_id"))
    return OtherEvent(name=event_name, action=action)


# -- decisions -------------------------------------------------------------------------------

class ActionKind(StrEnum):
    ENQUEUE = "enqueue"                # record a Change + Run for pull_request, queue it
    CANCEL_PR_RUNS = "cancel_pr_runs"  # cancel queued/running runs of the pull request
    RERUN = "rerun"                    # a new Run of an existing Change
    APPROVE = "approve"                # mark the run's visual changes approved, republish
    AUTHORIZE = "authorize"            # a maintainer lets a waiting run go (permission checked)
    IGNORE = "ignore"


@dataclass(frozen=True)
class Action:
    """What the webhook router should do. Fields not relevant to ``kind`` are empty.

    - ENQUEUE: ``pull_request`` holds the PR. If ``supersede`` is true, first cancel the
      queued/running runs of the same PR (owner, repo, pr_number) — a new push replaces them.
    - CANCEL_PR_RUNS: cancel the queued/running runs of (owner, repo, pr_number).
    - RERUN: find the Run by ``run_id`` (the check run's external_id) if given, else the newest
      Change of (owner, repo) with head ``head_sha`` (and a PR in ``pr_numbers`` if any); queue a
      new Run of that Change (superseding its queued/running runs). Nothing found: ignore.
    - APPROVE: find the Run by ``run_id`` or else by ``check_run_id``; set ``approved`` and
      publish its verdict again (the check turns green).
    - AUTHORIZE: find the waiting Run likewise; if ``sender`` may write to the repository,
      queue it (else refuse, and it stays waiting).

    ``wait_for_approval`` (ENQUEUE): the run is recorded ``waiting``, not queued.
    ``untrusted_head`` (ENQUEUE): the head's spec may not choose its sandbox.
    """

    kind: ActionKind
    reason: str
    installation_id: int | None = None
    owner: str = ""
    repo: str = ""
    pr_number: int | None = None
    pull_request: PullRequestEvent | None = None
    supersede: bool = False
    run_id: str | None = None
    check_run_id: int | None = None
    head_sha: str | None = None
    pr_numbers: tuple[int, ...] = field(default=())
    wait_for_approval: bool = False
    untrusted_head: bool = False
    sender: str = ""


def _ours(ev: CheckRunEvent | CheckSuiteEvent, settings: Settings) -> bool:
    """Whether a check run/suite belongs to our app: ``DIFFIE_GITHUB_APP_ID`` is the numeric
    App ID or the app's client ID (``Iv...``), compared with the payload's ``app.id`` or
    ``app.client_id`` (unknowable when not configured or not in the payload)."""
    configured = settings.github_app_id.strip()
    if not configured:
        return True
    if configured.isdigit():
        return ev.app_id is None or configured == str(ev.app_id)
    return ev.app_client_id is None or configured == ev.app_client_id


def decide(event: Event, settings: Settings) -> Action:
    """What to do with an event (pure: no I/O)."""
    if isinstance(event, PullRequestEvent):
        return _decide_pr(event, settings)
    if isinstance(event, CheckRunEvent):
        return _decide_check_run(event, settings)
    if isinstance(event, CheckSuiteEvent):
        return _decide_check_suite(event, settings)
    if isinstance(event, PingEvent):
        return Action(ActionKind.IGNORE, "ping")
    return Action(ActionKind.IGNORE, f"event {event.name}"
                  + (f".{event.action}" if event.action else "") + " is not handled")


def _decide_pr(ev: PullRequestEvent, settings: Settings) -> Action:
    common: dict[str, Any] = dict(installation_id=ev.installation_id, owner=ev.owner,
                                  repo=ev.repo, pr_number=ev.number, head_sha=ev.head_sha)
    if ev.action == "closed":
        return Action(ActionKind.CANCEL_PR_RUNS,
                      "pull request merged" if ev.merged else "pull request closed", **common)
    if ev.action == "converted_to_draft":
        if settings.github_process_drafts:
            return Action(ActionKind.IGNORE, "converted to draft (drafts are verified)", **common)
        return Action(ActionKind.CANCEL_PR_RUNS, "converted to draft (drafts are skipped)",
                      **common)
    if ev.action == "edited" and not ev.base_changed:
        return Action(ActionKind.IGNORE, "pull_request.edited without a new base (title or "
                      "body only)", **common)
    if ev.action not in PR_RUN_ACTIONS and ev.action != "edited":
        return Action(ActionKind.IGNORE, f"pull_request.{ev.action} is not handled", **common)
    if ev.draft and not settings.github_process_drafts:
        if ev.action == "synchronize":
            # a push to a draft makes any older run stale; nothing new is started
            return Action(ActionKind.CANCEL_PR_RUNS, "push to a draft (drafts are skipped)",
                          **common)
        return Action(ActionKind.IGNORE, "draft pull request (DIFFIE_GITHUB_PROCESS_DRAFTS off)",
                      **common)
    untrusted = trust.untrusted_head(is_fork=ev.is_fork, association=ev.author_association)
    policy = trust.policy_for(settings, ev.owner, ev.repo)
    if trust.needs_approval(policy, is_fork=ev.is_fork, association=ev.author_association):
        return Action(ActionKind.ENQUEUE, trust.approval_reason(policy, is_fork=ev.is_fork),
                      pull_request=ev, supersede=True, wait_for_approval=True,
                      untrusted_head=untrusted, **common)
    what = ("pull_request.edited: the base changed to " + (ev.base_ref or ev.base_sha[:12])
            if ev.action == "edited" else f"pull_request.{ev.action}")
    return Action(ActionKind.ENQUEUE, what, pull_request=ev,
                  supersede=True, untrusted_head=untrusted, **common)


def _decide_check_run(ev: CheckRunEvent, settings: Settings) -> Action:
    common: dict[str, Any] = dict(
        installation_id=ev.installation_id, owner=ev.owner, repo=ev.repo,
        run_id=ev.external_id or None, check_run_id=ev.check_run_id, head_sha=ev.head_sha,
        pr_numbers=tuple(p.number for p in ev.pull_requests),
        pr_number=ev.pull_requests[0].number if len(ev.pull_requests) == 1 else None)
    if not _ours(ev, settings):
        return Action(ActionKind.IGNORE, f"check run {ev.name!r} belongs to another app",
                      **common)
    if ev.action == "rerequested":
        return Action(ActionKind.RERUN, "check run re-run requested", **common)
    if ev.action == "requested_action":
        if ev.requested_action == APPROVE_IDENTIFIER:
            return Action(ActionKind.APPROVE, "visual changes approved", **common)
        if ev.requested_action == AUTHORIZE_IDENTIFIER:
            return Action(ActionKind.AUTHORIZE, f"run authorized by {ev.sender or 'nobody'}",
                          sender=ev.sender, **common)
        return Action(ActionKind.IGNORE, f"unknown requested action {ev.requested_action!r}",
                      **common)
    return Action(ActionKind.IGNORE, f"check_run.{ev.action} is not handled", **common)


def _decide_check_suite(ev: CheckSuiteEvent, settings: Settings) -> Action:
    common: dict[str, Any] = dict(
        installation_id=ev.installation_id, owner=ev.owner, repo=ev.repo, head_sha=ev.head_sha,
        pr_numbers=tuple(p.number for p in ev.pull_requests),
        pr_number=ev.pull_requests[0].number if len(ev.pull_requests) == 1 else None)
    if not _ours(ev, settings):
        return Action(ActionKind.IGNORE, "check suite of another app", **common)
    if ev.action == "rerequested":
        return Action(ActionKind.RERUN, "check suite re-run requested", **common)
    # `requested` fires on every push; pull requests arrive through pull_request events
    return Action(ActionKind.IGNORE, f"check_suite.{ev.action} is not handled", **common)
