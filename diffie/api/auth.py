"""Who may call ``/v1``: bearer tokens with scopes (``DIFFIE_API_TOKENS``).

Each comma-separated entry is ``TOKEN`` (every scope: what a plain token always meant) or
``SCOPES:TOKEN`` where SCOPES is ``read``, ``submit`` or ``read+submit``:

- ``read``: ``GET`` runs, reports, artifacts and the schema;
- ``submit``: ``POST /v1/runs``.

An entry whose prefix is not a scope (``abc:def``) is a plain token, as before scopes existed;
a warning is logged when the prefix looks like a mistyped scope. No tokens at all: the API is
open (``diffie serve`` refuses that on a non-loopback address without ``--insecure-open``).
People who follow a report link need no token: those links are signed (``diffie.links``).
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from diffie.errors import ConfigError

log = logging.getLogger(__name__)

Scope = Literal["read", "submit"]
SCOPES: tuple[Scope, ...] = ("read", "submit")
_PREFIX = re.compile(r"^([A-Za-z+]+):(.*)$", re.S)

_bearer = HTTPBearer(auto_error=False,
                     description="One of DIFFIE_API_TOKENS (when set), with the needed scope.")


@dataclass(frozen=True)
class Token:
    secret: str
    scopes: frozenset[str]


def parse_tokens(entries: Iterable[str], *, warn: bool = False) -> list[Token]:
    """The tokens of ``DIFFIE_API_TOKENS`` entries; ConfigError naming a bad entry."""
    tokens: list[Token] = []
    for i, raw in enumerate(entries, 1):
        entry = raw.strip()
        if not entry:
            continue
        match = _PREFIX.match(entry)
        scopes = set(match.group(1).lower().split("+")) if match else set()
        if match and scopes and scopes <= set(SCOPES):
            secret = match.group(2)
            if not secret:
                raise ConfigError(f"DIFFIE_API_TOKENS entry {i} ({match.group(1)}:) has no token "
                                  "after the scope")
            tokens.append(Token(secret, frozenset(scopes)))
            continue
        if match and warn:
            log.warning("DIFFIE_API_TOKENS entry %d starts with %r, which is not a scope (%s): "
                        "it is used as a plain token with every scope", i,
                        match.group(1) + ":", ", ".join(SCOPES))
        tokens.append(Token(entry, frozenset(SCOPES)))
    return tokens


def scopes_of(given: str, tokens: list[Token]) -> frozenset[str] | None:
    """The scopes of the token ``given`` (None: no such token); compares against every token,
    so the time taken does not tell which one matched."""
    found: frozenset[str] | None = None
    raw = given.encode()
    for token in tokens:
        if hmac.compare_digest(raw, token.secret.encode()):
            found = token.scopes if found is None else found | token.scopes
    return found


def require_scope(scope: Scope) -> Callable[..., None]:
    """A dependency: 401 without a valid bearer token, 403 when the token lacks ``scope``
    (no tokens configured: the API is open and everything is allowed)."""

    def dependency(request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None,
                                          Depends(_bearer)]) -> None:
        tokens = parse_tokens(request.app.state.ctx.settings.api_tokens)
        if not tokens:
            return
        scopes = scopes_of(credentials.credentials, tokens) if credentials else None
        if scopes is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                                "missing or invalid bearer token" if credentials else
                                "this API needs a bearer token (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})
        if scope not in scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"this token lacks the {scope!r} scope (it has: "
                                f"{', '.join(sorted(scopes))})")

    dependency.__name__ = f"require_{scope}"
    return dependency


def optional_credentials(credentials: Annotated[HTTPAuthorizationCredentials | None,
                                                Depends(_bearer)]) -> str | None:
    """A dependency: the bearer token given, if any (for routes open to all that say more to
    a token holder)."""
    return credentials.credentials if credentials else None


def allows(entries: Iterable[str], given: str | None, scope: Scope) -> bool:
    """Whether ``given`` has ``scope`` (no tokens configured: everyone has every scope)."""
    tokens = parse_tokens(entries)
    if not tokens:
        return True
    scopes = scopes_of(given, tokens) if given else None
    return scopes is not None and scope in scopes


require_read = require_scope("read")
require_submit = require_scope("submit")
