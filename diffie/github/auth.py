"""GitHub App authentication: the app's JWT and a cache of installation access tokens.

The app signs a short JWT (RS256, ``iat`` 60 s in the past against clock drift, ``exp`` 9 minutes
ahead, ``iss`` the app id) and exchanges it for an installation token
(``POST /app/installations/{id}/access_tokens``). Installation tokens live an hour; the cache
hands one out until 5 minutes before its ``expires_at`` and drops it on a 401 (see
:class:`diffie.github.client.GitHubClient`). Nothing here logs a token or a key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jwt

from diffie.config import Settings
from diffie.errors import ConfigError

JWT_BACKDATE_S = 60          # iat: 60 s in the past (GitHub's advice, against clock drift)
JWT_LIFETIME_S = 9 * 60      # exp: GitHub refuses more than 10 minutes
REFRESH_MARGIN_S = 5 * 60    # stop using an installation token 5 minutes before it expires

Clock = Callable[[], float]


@dataclass(frozen=True)
class InstallationToken:
    token: str
    expires_at: float        # epoch seconds

    def __repr__(self) -> str:   # never show the secret, even in a debugger or a traceback
        return f"InstallationToken(token='***', expires_at={self.expires_at})"


def parse_expires_at(value: str) -> float:
    """GitHub's ``expires_at`` (``2016-07-11T22:14:10Z``) as epoch seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class AppAuth:
    """Signs app JWTs and caches installation tokens (thread-safe)."""

    def __init__(self, app_id: str | int, private_key_pem: str | bytes, *,
                 clock: Clock = time.time, refresh_margin_s: float = REFRESH_MARGIN_S) -> None:
        if not str(app_id).strip():
            raise ConfigError("GitHub App id is empty (DIFFIE_GITHUB_APP_ID)")
        self.app_id = str(app_id).strip()
        self._key = private_key_pem
        self._clock = clock
        self._margin = refresh_margin_s
        self._tokens: dict[int, InstallationToken] = {}
        self._lock = threading.Lock()
        # check the key once, so a bad PEM fails at start-up and not at the first webhook
        try:
            self.jwt()
        except Exception as exc:   # PyJWT/cryptography raise a variety of types
            raise ConfigError(f"GitHub App private key is not a usable RSA PEM key: "
                              f"{type(exc).__name__}") from None

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = time.time) -> AppAuth:
        if not settings.github_app_id:
            raise ConfigError("DIFFIE_GITHUB_APP_ID is not set")
        path = settings.github_private_key_path
        if path is None:
            raise ConfigError("DIFFIE_GITHUB_PRIVATE_KEY_PATH is not set")
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the GitHub App private key {path}: "
                              f"{exc.strerror}") from None
        return cls(settings.github_app_id, pem, clock=clock)

    def jwt(self) -> str:
        """A fresh app JWT: ``iat`` = now - 60 s, ``exp`` = now + 9 min, ``iss`` = app id (or
        client ID)."""
        now = int(self._clock())
        # iss: the App ID or the client ID (``Iv...``), as configured (JWT: a string)
        claims = {"iat": now - JWT_BACKDATE_S, "exp": now + JWT_LIFETIME_S, "iss": self.app_id}
        return jwt.encode(claims, self._key, algorithm="RS256")

    def cached_token(self, installation_id: int) -> str | None:
        """The cached token for an installation, unless it is within the refresh margin."""
        with self._lock:
            tok = self._tokens.get(installation_id)
            if tok is None or tok.expires_at - self._margin <= self._clock():
                return None
            return tok.token

    def store_token(self, installation_id: int, token: InstallationToken) -> None:
        with self._lock:
            self._tokens[installation_id] = token

    def invalidate(self, installation_id: int, token: str | None = None) -> None:
        """Forget an installation's token (after a 401). With ``token``, only if it is still
        the cached one, so a token another thread just refreshed survives."""
        with self._lock:
            cur = self._tokens.get(installation_id)
            if cur is not None and (token is None or cur.token == token):
                del self._tokens[installation_id]

    def __repr__(self) -> str:
        return f"AppAuth(app_id={self.app_id!r})"


