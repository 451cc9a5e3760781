"""One Diffie comment per pull request, found by a hidden marker and updated in place."""

from __future__ import annotations

import logging
from typing import Any

from diffie.errors import GitHubError, GitHubUnavailable
from diffie.github.client import GitHubClient, object_id, seg
from diffie.github.summary import COMMENT_LIMIT

log = logging.getLogger(__name__)

MARKER = "<!-- diffie:pr-comment -->"


def _is_ours(comment: dict[str, Any], app: dict[str, Any]) -> bool:
    """A comment this app wrote: the marker, and GitHub's own word for the author (the app's
    ``performed_via_github_app``, or its bot user ``<slug>[bot]``). A human's or another app's
    comment that copies the marker is never adopted."""
    body = comment.get("body")
    if not isinstance(body, str) or not body.startswith(MARKER):
        return False
    via = comment.get("performed_via_github_app")
    if isinstance(via, dict) and via.get("id") is not None:
        return str(via.get("id")) == str(app["id"])
    user = comment.get("user")
    return isinstance(user, dict) and user.get("type") == "Bot" and bool(app["slug"]) \
        and user.get("login") == f"{app['slug']}[bot]"


def find_comment(client: GitHubClient, *, installation_id: int, owner: str, repo: str,
                 number: int) -> dict[str, Any] | None:
    """Diffie's comment on the pull request (all pages are searched), or None."""
    app = client.app_identity()
    path = f"/repos/{seg(owner)}/{seg(repo)}/issues/{int(number)}/comments"
    for comment in client.paginate(path, installation_id=installation_id):
        if isinstance(comment, dict) and _is_ours(comment, app):
            return comment
    return None


def upsert_comment(client: GitHubClient, *, installation_id: int, owner: str, repo: str,
                   number: int, body: str) -> int:
    """Create Diffie's comment, or update it in place; returns the comment id.

    ``body`` gets the marker prepended when missing. A create that fails with a 5xx may have
    landed anyway, so it is never blindly repeated: the comments are searched again first."""
    if not body.startswith(MARKER):
        body = f"{MARKER}\n{body}"
    if len(body) > COMMENT_LIMIT:
        body = body[: COMMENT_LIMIT - 20] + "\n\n\u2026 (truncated)"
    repo_path = f"/repos/{seg(owner)}/{seg(repo)}"
    last: GitHubUnavailable | None = None
    for attempt in range(client.max_retries + 1):
        existing = find_comment(client, installation_id=installation_id, owner=owner, repo=repo,
                                number=number)
        if existing is not None:
            cid = int(existing["id"])
            if existing.get("body") != body:
                try:
                    client.patch(f"{repo_path}/issues/comments/{cid}",
                                 installation_id=installation_id, json={"body": body})
                except GitHubError as exc:
                    if exc.status != 404 or isinstance(exc, GitHubUnavailable):
                        raise
                    continue   # deleted between listing and editing: create a new one
            return cid
        try:
            created = client.post(f"{repo_path}/issues/{int(number)}/comments",
                                  installation_id=installation_id, json={"body": body},
                                  retry_server_errors=False)
        except GitHubUnavailable as exc:
            last = exc
            log.warning("creating the PR comment failed (%s); looking for it before retrying",
                        exc)
            client.pause(attempt)
            continue
        return object_id(created, "comment")
    raise last or GitHubUnavailable(f"GitHub: could not create or update the comment on "
                                    f"{owner}/{repo}#{number}", path=f"{repo_path}/issues")
