"""Diffie as a GitHub App: auth, REST client, webhook events, check runs, PR comment, source.

Who calls what:

- webhook router: ``parse_event`` + ``decide`` → :class:`Action`; for ENQUEUE/RERUN, after the
  Run row exists, ``checks.create_queued(client, run, settings)``; for superseded/cancelled
  runs ``publish.publish_cancelled(run, settings, client, reason=...)``; for APPROVE
  ``publish.approve(run, settings, client)``.
- worker/pipeline: ``checks.mark_in_progress`` when it starts; ``SourceCache.fetch_pull_request``
  + ``checkout`` for the two revisions; ``publish.publish(run, verdict, settings, client)`` at
  the end (retry on ``GitHubUnavailable``).
"""

from diffie.github.auth import AppAuth
from diffie.github.checks import CONCLUSIONS, conclusion_for
from diffie.github.client import GitHubClient
from diffie.github.comments import MARKER, upsert_comment
from diffie.github.publish import PublishResult, publish, publish_cancelled
from diffie.github.repo_cache import SourceCache
from diffie.github.webhook_events import (
    CHECK_NAME,
    Action,
    ActionKind,
    CheckRunEvent,
    CheckSuiteEvent,
    OtherEvent,
    PayloadError,
    PingEvent,
    PullRequestEvent,
    decide,
    parse_event,
    verify_signature,
)
from diffie.redact import redact

__all__ = [
    "CHECK_NAME", "CONCLUSIONS", "MARKER", "Action", "ActionKind", "AppAuth", "CheckRunEvent",
    "CheckSuiteEvent", "GitHubClient", "OtherEvent", "PayloadError", "PingEvent",
    "PublishResult", "PullRequestEvent", "SourceCache", "conclusion_for", "decide",
    "parse_event", "publish", "publish_cancelled", "redact",
    "upsert_comment", "verify_signature",
]
