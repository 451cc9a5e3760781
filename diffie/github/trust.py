"""Who a pull request's code is trusted from, and who may let it run.

- :func:`untrusted_head`: a pull request from a fork, or by an author without push rights
  (``author_association`` other than OWNER, MEMBER, COLLABORATOR), is untrusted: its sandbox,
  deploy commands and allowed origins come from the base revision (:mod:`diffie.spec_trust`).
- :func:`needs_approval`: whether its run waits (status ``waiting``) for a maintainer's
  "Authorize run", by ``DIFFIE_GITHUB_REQUIRE_APPROVAL`` — ``forks`` (default), ``first-time``
  (forks and authors GitHub calls FIRST_TIME_CONTRIBUTOR, FIRST_TIMER or NONE), ``all`` or
  ``none`` — overridden per owner or repository by ``DIFFIE_GITHUB_REQUIRE_APPROVAL_BY``
  (``acme=all,acme/site=none``: the repository's entry wins over its owner's).
- :func:`repository_permission` / :func:`may_authorize`: only someone with write, maintain or
  admin permission on the repository may authorise (GitHub's
  ``GET /repos/{owner}/{repo}/collaborators/{username}/permission``).
"""

from __future__ import annotations

import re

from diffie.approval_policy import OVERRIDES_SETTING, POLICIES, SETTING, parse_overrides
from diffie.config import Settings
from diffie.errors import GitHubError, GitHubUnavailable
from diffie.github.client import GitHubClient, seg

__all__ = ["OVERRIDES_SETTING", "POLICIES", "SETTING", "approval_reason", "parse_overrides", "policy_for",
           "untrusted_head", "needs_approval", "repository_permission", "may_authorize"]

TRUSTED_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
FIRST_TIME_ASSOCIATIONS = frozenset({"FIRST_TIME_CONTRIBUTOR", "FIRST_TIMER", "NONE"})
AUTHORIZING_ROLES = ("admin", "maintain", "write")


def policy_for(settings: Settings, owner: str, repo: str) -> str:
    """The approval policy of ``owner/repo``: its own entry, its owner's, else the default."""
    by = settings.github_require_approval_by
    return by.get(f"{owner}/{repo}".lower()) or by.get(owner.lower()) \
        or settings.github_require_approval


def untrusted_head(*, is_fork: bool, association: str) -> bool:
    """Whether the head's spec may not choose its own sandbox (a fork, or no push rights)."""
    return is_fork or association.upper() not in TRUSTED_ASSOCIATIONS


def needs_approval(policy: str, *, is_fork: bool, association: str) -> bool:
    """Whether a pull request's run waits for a maintainer under ``policy``."""
    if policy == "none":
        return False
    if policy == "all":
        return True
    if policy == "first-time":
        return is_fork or association.upper() in FIRST_TIME_ASSOCIATIONS or not association
    return is_fork                                     # "forks"


def approval_reason(policy: str, *, is_fork: bool) -> str:
    """Why a run waits, for the check run and the webhook's answer."""
    if is_fork:
        who = "comes from a fork"
    elif policy == "all":
        who = "is on a repository where every pull request needs authorisation"
    else:
        who = "is by a first-time contributor"
    return (f"this pull request {who} ({SETTING}={policy}): Diffie runs its code only after "
            "someone with write access clicks \"Authorize run\"")


def repository_permission(client: GitHubClient, *, installation_id: int, owner: str, repo: str,
                          username: str) -> str:
    """``username``'s role on the repository: admin, maintain, write, triage, read or none
    (``none`` for a user GitHub does not know). Raises GitHubUnavailable when GitHub is down."""
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(\[bot\])?", username or ""):
        return "none"
    path = f"/repos/{seg(owner)}/{seg(repo)}/collaborators/{seg(username)}/permission"
    try:
        data = client.get(path, installation_id=installation_id) or {}
    except GitHubUnavailable:
        raise
    except GitHubError as exc:
        if exc.status == 404:
            return "none"
        raise
    role = data.get("role_name") or data.get("permission") or "none"
    return str(role).lower()


def may_authorize(role: str) -> bool:
    return role in AUTHORIZING_ROLES
