"""A small GitHub REST client (httpx): app and installation auth, retries, rate limits.

- Every request carries ``Accept: application/vnd.github+json``,
  ``X-GitHub-Api-Version: 2022-11-28`` and a ``User-Agent``.
- ``installation_id=None`` authenticates as the app (``Bearer <JWT>``); otherwise with that
  installation's token (fetched, cached, and refreshed once on a 401).
- 5xx answers and network errors are retried with exponential backoff; after the last attempt
  :class:`~diffie.errors.GitHubUnavailable` (retryable) is raised.
- Redirects (301, 302, 307, 308) are followed on the same host, the request repeated verbatim
  (GitHub: "any request may result in a redirection"); credentials never go to another host.
- Rate limits (403/429 with ``retry-after``, or ``x-ratelimit-remaining: 0`` with
  ``x-ratelimit-reset``; a secondary limit without either: 60 s, doubling while they go on) are
  waited out when the wait is short, else ``GitHubUnavailable`` with ``retry_after``. The
  wait holds for the whole process: no request of this client is sent before it ends.
- Any other 4xx raises :class:`~diffie.errors.GitHubError` naming the method, the path and
  GitHub's message. Tokens never appear in exceptions or logs.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from diffie.config import Settings
from diffie.errors import GitHubError, GitHubUnavailable
from diffie.github.auth import AppAuth, InstallationToken, parse_expires_at
from diffie.redact import redact

log = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
ACCEPT = "application/vnd.github+json"
USER_AGENT = "Diffie-GitHub-App/0.1 (+https://github.com/diffie)"
SECONDARY_RATE_LIMIT_WAIT_S = 60.0   # GitHub: "wait at least one minute" when no header says
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 307, 308)


def seg(value: str | int) -> str:
    """One URL path segment, escaped (owner and repo names come from webhooks)."""
    return quote(str(value), safe="")


class GitHubClient:
    """Synchronous GitHub REST client. Thread-safe; one per process is enough."""

    def __init__(self, app: AppAuth, *, base_url: str = "https://api.github.com",
                 user_agent: str = USER_AGENT, timeout_s: float = 30.0, max_retries: int = 4,
                 backoff_s: float = 0.5, max_backoff_s: float = 16.0,
                 max_rate_limit_wait_s: float = 60.0, max_rate_limit_waits: int = 3,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.app = app
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_rate_limit_wait_s = max_rate_limit_wait_s
        self.max_rate_limit_waits = max_rate_limit_waits
        self._sleep = sleep
        self._clock = clock
        self._token_lock = threading.Lock()
        self._limit_lock = threading.Lock()
        self._blocked_until = 0.0      # clock time before which no request is sent (rate limit)
        self._secondary_strikes = 0    # secondary limits without a header, in a row
        self._identity: dict[str, Any] | None = None
        self._http = httpx.Client(
            base_url=self.base_url + "/", timeout=timeout_s, transport=transport,
            follow_redirects=False, trust_env=False,
            headers={"Accept": ACCEPT, "X-GitHub-Api-Version": API_VERSION,
                     "User-Agent": user_agent})

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> GitHubClient:
        """The client for the configured app (``DIFFIE_GITHUB_APP_ID``,
        ``DIFFIE_GITHUB_PRIVATE_KEY_PATH``, ``DIFFIE_GITHUB_API_URL``)."""
        return cls(AppAuth.from_settings(settings), base_url=settings.github_api_url, **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GitHubClient(base_url={self.base_url!r}, app_id={self.app.app_id!r})"

    # -- tokens ---------------------------------------------------------------------------

    def installation_token(self, installation_id: int) -> str:
        """A valid installation access token (cached; fetched when missing or near expiry)."""
        token = self.app.cached_token(installation_id)
        if token is not None:
            return token
        with self._token_lock:
            token = self.app.cached_token(installation_id)
            if token is not None:
                return token
            data = self.request("POST", f"/app/installations/{seg(installation_id)}/access_tokens",
                                installation_id=None).json()
            try:
                fresh = InstallationToken(str(data["token"]), parse_expires_at(data["expires_at"]))
            except (KeyError, TypeError, ValueError):
                raise GitHubError("GitHub answered the installation token request without a "
                                  "token/expires_at", method="POST",
                                  path="/app/installations/{id}/access_tokens") from None
            self.app.store_token(installation_id, fresh)
            log.info("GitHub: new installation token for installation %s", installation_id)
            return fresh.token

    def app_identity(self) -> dict[str, Any]:
        """The app itself (``GET /app``: numeric ``id``, ``slug``), fetched once: its bot's
        login is ``<slug>[bot]``, and its comments carry ``performed_via_github_app.id``."""
        if self._identity is None:
            data = self.get("/app", installation_id=None)
            if not isinstance(data, dict) or "id" not in data:
                raise GitHubError("GitHub answered GET /app without the app's id", method="GET",
                                  path="/app")
            self._identity = {"id": int(data["id"]), "slug": str(data.get("slug") or "")}
        return self._identity

    # -- requests -------------------------------------------------------------------------

    def request(self, method: str, path: str, *, installation_id: int | None,
                json: Any = None, params: dict[str, Any] | None = None,
                retry_server_errors: bool = True) -> httpx.Response:
        """Send one API request; ``path`` is relative to the API base (``/repos/o/r/...``) or a
        full URL on the same host (pagination links). Raises GitHubError/GitHubUnavailable."""
        method = method.upper()
        url, shown = self._resolve(path)
        attempt = 0
        rate_waits = 0
        redirects = 0
        refreshed = False
        while True:
            self._wait_for_rate_limit(method, shown)
            secret = (self.app.jwt() if installation_id is None
                      else self.installation_token(installation_id))
            headers = {"Authorization": f"Bearer {secret}"}
            try:
                resp = self._http.request(method, url, headers=headers, json=json, params=params)
            except httpx.TransportError as exc:
                # a request that may have reached GitHub is only repeated when allowed
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt >= self.max_retries or not (retry_server_errors or unsent):
                    raise GitHubUnavailable(
                        f"GitHub {method} {shown}: network error ({type(exc).__name__}) "
                        f"after {attempt + 1} attempts", method=method, path=shown) from None
                delay = self._backoff(attempt)
                log.warning("GitHub %s %s: %s, retrying in %.1fs (%d/%d)", method, shown,
                            type(exc).__name__, delay, attempt + 1, self.max_retries)
                self._sleep(delay)
                attempt += 1
                continue

            status = resp.status_code
            if status in REDIRECTS:
                location = resp.headers.get("location")
                if not location or redirects >= MAX_REDIRECTS:
                    raise GitHubError(f"GitHub {method} {shown}: {status} redirect "
                                      f"{'without a Location' if not location else 'loop'}",
                                      status=status, method=method, path=shown)
                url, shown = self._resolve(str(resp.request.url.join(location)))
                params = None            # the Location carries its own query
                redirects += 1
                log.info("GitHub %s: %d, repeating it at %s", method, status, shown)
                continue
            if 300 <= status < 400:
                raise GitHubError(f"GitHub {method} {shown}: unexpected {status}", status=status,
                                  method=method, path=shown)
            if status == 401 and installation_id is not None and not refreshed:
                # expired or revoked installation token: drop it, fetch a new one, once
                log.info("GitHub %s %s: 401, refreshing the installation token", method, shown)
                self.app.invalidate(installation_id, secret)
                refreshed = True
                continue
            if status in (403, 429):
                wait = self._rate_limit_wait(resp)
                if wait is not None:
                    self._block(wait)
                    if wait > self.max_rate_limit_wait_s or rate_waits >= self.max_rate_limit_waits:
                        raise GitHubUnavailable(
                            f"GitHub {method} {shown}: rate limited ({status}), retry in "
                            f"{wait:.0f}s", status=status, method=method, path=shown,
                            retry_after=wait)
                    log.warning("GitHub %s %s: rate limited (%d), waiting %.1fs", method, shown,
                                status, wait)
                    rate_waits += 1
                    continue            # the process-wide wait is slept at the loop's top
            if status >= 500:
                if not retry_server_errors or attempt >= self.max_retries:
                    raise GitHubUnavailable(
                        f"GitHub {method} {shown}: {status} {self._message(resp, secret)} "
                        f"after {attempt + 1} attempt(s)", status=status, method=method,
                        path=shown, retry_after=self._retry_after(resp))
                delay = self._retry_after(resp) or self._backoff(attempt)
                log.warning("GitHub %s %s: %d, retrying in %.1fs (%d/%d)", method, shown, status,
                            delay, attempt + 1, self.max_retries)
                self._sleep(min(delay, self.max_rate_limit_wait_s))
                attempt += 1
                continue
            if status >= 400:
                raise GitHubError(f"GitHub {method} {shown}: {status} {self._message(resp, secret)}",
                                  status=status, method=method, path=shown)
            with self._limit_lock:
                self._secondary_strikes = 0
            return resp

    def _block(self, wait: float) -> None:
        """No request of this process before ``wait`` seconds from now."""
        with self._limit_lock:
            self._blocked_until = max(self._blocked_until, self._clock() + wait)

    def _wait_for_rate_limit(self, method: str, shown: str) -> None:
        with self._limit_lock:
            wait = self._blocked_until - self._clock()
        if wait <= 0:
            return
        if wait > self.max_rate_limit_wait_s:
            raise GitHubUnavailable(
                f"GitHub {method} {shown}: not sent, rate limited for another {wait:.0f}s",
                method=method, path=shown, retry_after=wait)
        self._sleep(wait)

    def get(self, path: str, *, installation_id: int | None,
            params: dict[str, Any] | None = None) -> Any:
        return _json(self.request("GET", path, installation_id=installation_id, params=params))

    def post(self, path: str, *, installation_id: int | None, json: Any = None,
             retry_server_errors: bool = True) -> Any:
        return _json(self.request("POST", path, installation_id=installation_id, json=json,
                                  retry_server_errors=retry_server_errors))

    def patch(self, path: str, *, installation_id: int | None, json: Any = None) -> Any:
        return _json(self.request("PATCH", path, installation_id=installation_id, json=json))

    def paginate(self, path: str, *, installation_id: int | None,
                 params: dict[str, Any] | None = None, per_page: int = 100,
                 max_pages: int = 100, key: str | None = None) -> Iterator[Any]:
        """Items of a list endpoint, following ``Link: rel="next"`` (same host only); ``key``:
        the pages are objects holding the list there (``check_runs``)."""
        page_params: dict[str, Any] | None = {**(params or {}), "per_page": per_page}
        url: str | None = path
        pages = 0
        while url is not None and pages < max_pages:
            resp = self.request("GET", url, installation_id=installation_id, params=page_params)
            data = _json(resp)
            if key is not None and isinstance(data, dict):
                data = data.get(key)
            items = data if isinstance(data, list) else []
            yield from items
            pages += 1
            url = resp.links.get("next", {}).get("url")
            page_params = None       # the next link carries its own query

    # -- helpers --------------------------------------------------------------------------

    def _resolve(self, path: str) -> tuple[str, str]:
        """(URL for httpx, path shown in messages)."""
        if path.startswith(("http://", "https://")):
            base, target = urlsplit(self.base_url), urlsplit(path)
            if (target.scheme, target.netloc) != (base.scheme, base.netloc):
                raise GitHubError(f"refusing to send credentials to {target.netloc}", path=path)
            shown = target.path[len(base.path):] if target.path.startswith(base.path) else \
                target.path
            return path, shown or "/"
        if not path.startswith("/"):
            path = "/" + path
        return path.lstrip("/"), path

    def pause(self, attempt: int) -> None:
        """Sleep the backoff delay of retry number ``attempt`` (0-based)."""
        self._sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        base = min(self.max_backoff_s, self.backoff_s * (2.0 ** attempt))
        return base * random.uniform(0.75, 1.0)

    def _retry_after(self, resp: httpx.Response) -> float | None:
        value = resp.headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - self._clock())

    def _rate_limit_wait(self, resp: httpx.Response) -> float | None:
        """Seconds to wait when a 403/429 is a rate limit; None when it is a real refusal."""
        retry_after = self._retry_after(resp)
        if retry_after is not None:
            return retry_after
        if resp.headers.get("x-ratelimit-remaining") == "0":
            try:
                reset = float(resp.headers.get("x-ratelimit-reset", ""))
            except ValueError:
                return SECONDARY_RATE_LIMIT_WAIT_S
            return max(0.0, reset - self._clock()) + 1.0
        if resp.status_code == 429 or "rate limit" in self._message(resp, None).lower():
            with self._limit_lock:     # GitHub: wait exponentially longer while they go on
                strikes = self._secondary_strikes
                self._secondary_strikes += 1
            return SECONDARY_RATE_LIMIT_WAIT_S * 2.0 ** min(strikes, 6)
        return None

    @staticmethod
    def _message(resp: httpx.Response, secret: str | None) -> str:
        """GitHub's error message (plus 422 validation details), redacted."""
        try:
            data = resp.json()
        except ValueError:
            text = resp.text[:300].strip() or resp.reason_phrase
            return redact(text, secret)
        if not isinstance(data, dict):
            return redact(str(data)[:300], secret)
        msg = str(data.get("message") or resp.reason_phrase)
        details: list[str] = []
        for err in data.get("errors") or []:
            if isinstance(err, dict):
                details.append(str(err.get("message") or
                                   " ".join(str(err.get(k, "")) for k in ("resource", "field",
                                                                          "code")).strip()))
            else:
                details.append(str(err))
        if details:
            msg += " (" + "; ".join(d for d in details if d) + ")"
        return redact(msg[:1000], secret)


def object_id(data: Any, what: str) -> int:
    """The ``id`` of an object GitHub answered with; a GitHubError (not a KeyError) when the
    answer has none (a proxy's empty 200, an unfollowed redirect's body)."""
    try:
        return int(data["id"])
    except (KeyError, TypeError, ValueError):
        raise GitHubError(f"GitHub answered without the {what}'s id") from None


def _json(resp: httpx.Response) -> Any:
    if resp.status_code == 204 or not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        raise GitHubError(f"GitHub {resp.request.method} {resp.request.url.path}: "
                          f"answer is not JSON", status=resp.status_code,
                          method=resp.request.method, path=resp.request.url.path) from None
