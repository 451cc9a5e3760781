"""A real HTTP stand-in for GitHub, for tests: the REST API and git's smart HTTP.

:class:`GitHubStandIn` is an ``http.server`` in a thread on 127.0.0.1 that serves the parts of
GitHub's REST API Diffie uses, records every request, and checks each one against GitHub's
documentation (docs.github.com/rest: apps, checks/runs, issues/comments):

- headers: ``Accept: application/vnd.github+json``, ``X-GitHub-Api-Version: 2022-11-28``, a
  ``User-Agent``; ``Authorization: Bearer <JWT>`` (RS256, ``iss`` = app id, ``exp`` at most
  10 minutes ahead, ``iat`` not in the future) on ``/app/...``; ``token <t>``/``Bearer <t>``
  with a live installation token everywhere else (401 ``Bad credentials`` otherwise);
- bodies: check runs need ``name`` + ``head_sha``; ``status`` and ``conclusion`` take only the
  documented values (``completed`` needs a conclusion); ``output`` needs ``title`` + ``summary``
  (<= 65,535 chars), at most 50 annotations each with ``path``, ``start_line``, ``end_line``,
  ``annotation_level`` (notice/warning/failure) and ``message``; images need ``alt`` +
  ``image_url``; at most 3 actions (label <= 20, description <= 40, identifier <= 20);
  comments need a ``body`` (<= 65,536 chars).

Repository permissions (``GET /repos/{o}/{r}/collaborators/{user}/permission``) come from
``permissions[(owner, repo, user)]`` (lower case; a role: admin, maintain, write, triage, read),
``none`` for anyone else, 404 for a login that is not a GitHub user name.

Anything off is answered like GitHub would (401/403/404/422) *and* appended to
``violations``, which tests assert empty. Failures are scriptable: ``fail_next(...)`` (a 502
once, a 403 secondary rate limit with ``retry-after``), ``expire_tokens()`` (the next request
with an old token gets a 401).

:class:`GitSmartHTTP` (``tests/git_smart_http.py``, re-exported here) serves local bare
repositories through ``git http-backend`` (CGI) and requires ``Authorization: Basic`` with
``x-access-token:<installation token>``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import jwt

from diffie.config import Settings

# git's smart HTTP lives in its own module; re-exported here so tests need one import
from tests.git_smart_http import GitRequest, GitSmartHTTP, commit_files, git, publish_bare

API_VERSION = "2022-11-28"
ACCEPT = "application/vnd.github+json"
CHECK_STATUSES = {"queued", "in_progress", "completed"}
ACTIONS_ONLY_STATUSES = {"waiting", "requested", "pending"}
CONCLUSIONS = {"action_required", "cancelled", "failure", "neutral", "success", "skipped",
               "timed_out"}
ANNOTATION_LEVELS = {"notice", "warning", "failure"}
TEXT_LIMIT = 65_535
COMMENT_LIMIT = 65_536
ANNOTATION_TEXT_LIMIT = 64 * 1024          # message, raw_details: bytes
ANNOTATION_TITLE_LIMIT = 255               # characters
LIST_PER_PAGE = 30                         # GitHub's default page size


def make_rsa_key() -> tuple[bytes, bytes]:
    """A fresh test RSA key pair: (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]           # lower-case names
    body: Any
    status: int = 0
    auth: str = ""                    # "jwt", "token", or "" (missing/invalid)


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: Any
    remaining: int
    redirect: bool = False            # answer with a Location to the request's own URL


@dataclass
class _Token:
    installation_id: int
    expires_at: float
    revoked: bool = False


class _Reply(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}


def _error(status: int, message: str, **extra: Any) -> _Reply:
    return _Reply(status, {"message": message,
                           "documentation_url": "https://docs.github.com/rest", **extra})


@dataclass
class GitHubStandIn:
    """GitHub's REST API on loopback. Use as a context manager; ``url`` is the API base."""

    app_id: str
    public_key_pem: bytes
    token_ttl_s: float = 3600.0
    slug: str = "diffie"
    client_id: str = "Iv23liDiffieStandIn01"   # a JWT's iss may be this instead of the App ID
    requests: list[Recorded] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[tuple[str, str, int], list[dict[str, Any]]] = field(default_factory=dict)
    tokens: dict[str, _Token] = field(default_factory=dict)
    permissions: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.outage = False       # True: every connection is dropped without an answer
        self._sockets: set[Any] = set()
        self._lock = threading.RLock()
        self._failures: list[_Failure] = []
        self._ids = 1000
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> GitHubStandIn:
        standin = self

        class Handler(_APIHandler):
            owner = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="github-standin")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections (GitHub is gone)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for sock in list(self._sockets):
                try:
                    sock.shutdown(2)
                except OSError:
                    pass
            self._sockets.clear()

    def __enter__(self) -> GitHubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- scripting and inspection -----------------------------------------------------------

    def fail_next(self, method: str, path_pattern: str, status: int, *,
                  headers: dict[str, str] | None = None, body: Any = None,
                  times: int = 1) -> None:
        """The next ``times`` requests matching (method, path regex) get this answer."""
        with self._lock:
            self._failures.append(_Failure(method.upper(), re.compile(path_pattern), status,
                                           headers or {}, body if body is not None else
                                           {"message": "scripted failure"}, times))

    def redirect_next(self, method: str, path_pattern: str, status: int = 307, *,
                      times: int = 1) -> None:
        """The next ``times`` matching requests are redirected (``Location``: the same URL with
        ``redirected=<n>`` added), to be repeated there verbatim."""
        with self._lock:
            self._failures.append(_Failure(method.upper(), re.compile(path_pattern), status, {},
                                           None, times, redirect=True))

    @property
    def bot_login(self) -> str:
        return f"{self.slug}[bot]"

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def expire_tokens(self) -> None:
        """Every installation token issued so far answers 401 from now on."""
        with self._lock:
            for tok in self.tokens.values():
                tok.revoked = True

    def is_valid_token(self, token: str) -> bool:
        with self._lock:
            tok = self.tokens.get(token)
            return tok is not None and not tok.revoked and tok.expires_at > time.time()

    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self.tokens)

    def add_comment(self, owner: str, repo: str, number: int, body: str, *,
                    user_type: str = "User", login: str = "octocat",
                    via_app: dict[str, Any] | None = None) -> dict[str, Any]:
        """Someone else's comment (``via_app``: another app's, {"id", "slug"})."""
        with self._lock:
            comment = self._new_comment(owner, repo, number, body, login, user_type, via_app)
            return comment

    def grant(self, owner: str, repo: str, user: str, role: str) -> None:
        """``user``'s role on ``owner/repo`` (admin, maintain, write, triage, read)."""
        with self._lock:
            self.permissions[(owner.lower(), repo.lower(), user.lower())] = role

    def calls(self, method: str, path_pattern: str) -> list[Recorded]:
        rx = re.compile(path_pattern)
        with self._lock:
            return [r for r in self.requests if r.method == method and rx.fullmatch(r.path)]

    def comments_on(self, owner: str, repo: str, number: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.comments.get((owner.lower(), repo.lower(), number), []))

    # -- internals ------------------------------------------------------------------------

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _violation(self, rec: Recorded, what: str) -> None:
        self.violations.append(f"{rec.method} {rec.path}: {what}")

    def _new_comment(self, owner: str, repo: str, number: int, body: str, login: str,
                     user_type: str, via_app: dict[str, Any] | None = None) -> dict[str, Any]:
        cid = self._next_id()
        now = iso(time.time())
        comment = {"id": cid, "body": body, "user": {"login": login, "type": user_type},
                   "performed_via_github_app": via_app,
                   "created_at": now, "updated_at": now,
                   "html_url": f"https://github.com/{owner}/{repo}/pull/{number}#issuecomment-{cid}"}
        self.comments.setdefault((owner.lower(), repo.lower(), number), []).append(comment)
        return comment

    def handle(self, rec: Recorded, base: str) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append(rec)
            try:
                for fail in self._failures:
                    if fail.remaining > 0 and fail.method == rec.method and \
                            fail.pattern.fullmatch(rec.path):
                        fail.remaining -= 1
                        if fail.redirect:
                            query = "&".join(f"{k}={v}" for k, vs in rec.query.items()
                                             for v in vs)
                            sep = "&" if query else ""
                            raise _Reply(fail.status, None, {"Location":
                                         f"{base}{rec.path}?{query}{sep}redirected="
                                         f"{fail.remaining + 1}"})
                        raise _Reply(fail.status, fail.body, fail.headers)
                self._check_headers(rec)
                result = self._route(rec, base)
                rec.status = result[0]
                return result
            except _Reply as reply:
                rec.status = reply.status
                return reply.status, reply.body, reply.headers

    def _check_headers(self, rec: Recorded) -> None:
        if not rec.headers.get("user-agent"):
            self._violation(rec, "no User-Agent")
            raise _error(403, "Request forbidden by administrative rules. Please make sure your "
                              "request has a User-Agent header")
        if rec.headers.get("accept") != ACCEPT:
            self._violation(rec, f"Accept is {rec.headers.get('accept')!r}, not {ACCEPT}")
        if rec.headers.get("x-github-api-version") != API_VERSION:
            self._violation(rec, "X-GitHub-Api-Version is "
                                 f"{rec.headers.get('x-github-api-version')!r}")
            raise _error(400, "Invalid API version")
        if rec.method in ("POST", "PATCH") and rec.body is _INVALID_JSON:
            self._violation(rec, "body is not JSON")
            raise _error(400, "Problems parsing JSON")

    def _auth_app(self, rec: Recorded) -> None:
        auth = rec.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            self._violation(rec, "app endpoint without Bearer JWT")
            raise _error(401, "A JSON web token could not be decoded")
        token = auth[len("Bearer "):]
        try:
            claims = jwt.decode(token, self.public_key_pem, algorithms=["RS256"],
                                options={"require": ["iat", "exp", "iss"]}, leeway=5)
        except jwt.PyJWTError as exc:
            self._violation(rec, f"bad JWT: {exc}")
            raise _error(401, "A JSON web token could not be decoded") from None
        now = time.time()
        if str(claims["iss"]) not in (str(self.app_id), self.client_id):
            self._violation(rec, f"JWT iss {claims['iss']!r} is neither the App ID nor the "
                                 "client ID")
            raise _error(401, "'Issuer' claim ('iss') must be an Integer")
        if claims["exp"] - now > 600 + 5:
            self._violation(rec, "JWT exp more than 10 minutes ahead")
            raise _error(401, "'Expiration time' claim ('exp') is too far in the future")
        if claims["iat"] > now + 5:
            self._violation(rec, "JWT iat in the future")
            raise _error(401, "'Issued at' claim ('iat') must be an Integer representing a "
                              "time in the past")
        rec.auth = "jwt"

    def _auth_installation(self, rec: Recorded) -> int:
        auth = rec.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme not in ("token", "Bearer") or not token:
            self._violation(rec, "no installation token")
            raise _error(401, "Requires authentication")
        if token.count(".") == 2 and token.startswith("eyJ"):
            self._violation(rec, "app JWT used on an installation endpoint")
            raise _error(403, "Resource not accessible by integration")
        tok = self.tokens.get(token)
        if tok is None or tok.revoked or tok.expires_at <= time.time():
            raise _error(401, "Bad credentials")   # an expired token is not a client bug
        rec.auth = "token"
        return tok.installation_id

    # -- routes ---------------------------------------------------------------------------

    _ROUTES: ClassVar[list[tuple[str, re.Pattern[str], str]]] = [
        ("POST", re.compile(r"/app/installations/(?P<inst>\d+)/access_tokens"), "_token"),
        ("GET", re.compile(r"/app"), "_app"),
        ("POST", re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/check-runs"), "_create_cr"),
        ("PATCH", re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/check-runs/(?P<id>\d+)"),
         "_update_cr"),
        ("GET", re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/check-runs/(?P<id>\d+)"),
         "_get_cr"),
        ("GET", re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/commits/(?P<ref>[^/]+)/check-runs"),
         "_list_cr"),
        ("GET", re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/(?P<n>\d+)/comments"),
         "_list_comments"),
        ("POST", re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/(?P<n>\d+)/comments"),
         "_create_comment"),
        ("PATCH", re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/comments/(?P<id>\d+)"),
         "_update_comment"),
        ("GET", re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/collaborators/(?P<user>[^/]+)"
                           r"/permission"), "_permission"),
    ]

    def _route(self, rec: Recorded, base: str) -> tuple[int, Any, dict[str, str]]:
        for method, rx, name in self._ROUTES:
            m = rx.fullmatch(rec.path)
            if m and method == rec.method:
                if rec.path == "/app" or rec.path.startswith("/app/"):
                    self._auth_app(rec)
                else:
                    self._auth_installation(rec)
                result: tuple[int, Any, dict[str, str]] = getattr(self, name)(rec, base,
                                                                              **m.groupdict())
                return result
        self._violation(rec, "no such endpoint in the stand-in")
        raise _error(404, "Not Found")

    def _permission(self, rec: Recorded, base: str, o: str, r: str, user: str) -> \
            tuple[int, Any, dict[str, str]]:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}(\[bot\])?", user):
            raise _error(404, "Not Found")
        role = self.permissions.get((o.lower(), r.lower(), user.lower()), "none")
        # GitHub's legacy "permission" folds maintain into write and triage into read
        legacy = {"maintain": "write", "triage": "read"}.get(role, role)
        return 200, {"permission": legacy, "role_name": role,
                     "user": {"login": user, "type": "User"}}, {}

    def _app(self, rec: Recorded, base: str) -> tuple[int, Any, dict[str, str]]:
        return 200, {"id": int(self.app_id), "slug": self.slug, "client_id": self.client_id,
                     "name": "Diffie", "owner": {"login": "acme"}}, {}

    def _token(self, rec: Recorded, base: str, inst: str) -> tuple[int, Any, dict[str, str]]:
        token = f"ghs_{os.urandom(18).hex()}"
        expires = time.time() + self.token_ttl_s
        self.tokens[token] = _Token(int(inst), expires)
        return 201, {"token": token, "expires_at": iso(expires),
                     "permissions": {"checks": "write", "contents": "read",
                                     "pull_requests": "write"},
                     "repository_selection": "all"}, {}

    def _validate_cr(self, rec: Recorded, body: Any, *, creating: bool,
                     existing: dict[str, Any] | None = None) -> None:
        def bad(what: str) -> _Reply:
            self._violation(rec, what)
            return _error(422, "Invalid request.\n\n" + what)

        if not isinstance(body, dict):
            raise bad("body is not an object")
        if creating:
            for key in ("name", "head_sha"):
                if not isinstance(body.get(key), str) or not body[key]:
                    raise bad(f'"{key}" wasn\'t supplied.')
        status = body.get("status")
        if status is not None:
            if status in ACTIONS_ONLY_STATUSES:
                raise bad(f"status {status!r} is reserved for GitHub Actions")
            if status not in CHECK_STATUSES:
                raise bad(f"status {status!r} is not a member of {sorted(CHECK_STATUSES)}")
        conclusion = body.get("conclusion")
        if conclusion is not None and conclusion not in CONCLUSIONS:
            raise bad(f"conclusion {conclusion!r} is not a member of {sorted(CONCLUSIONS)}")
        if (status == "completed" or body.get("completed_at")) and conclusion is None:
            raise bad("conclusion is required when status is completed / completed_at is set")
        if conclusion == "action_required" and not (body.get("details_url") or
                                                   (existing or {}).get("details_url")):
            raise bad("action_required needs a details_url")
        for key in ("details_url",):
            if key in body and not str(body[key]).startswith(("http://", "https://")):
                raise bad(f"{key} is not a URL")
        for key in ("started_at", "completed_at"):
            if key in body:
                try:
                    datetime.strptime(str(body[key]), "%Y-%m-%dT%H:%M:%SZ")
                except ValueError:
                    raise bad(f"{key} is not ISO 8601 (YYYY-MM-DDTHH:MM:SSZ)") from None
        if "external_id" in body and not isinstance(body["external_id"], str):
            raise bad("external_id is not a string")
        output = body.get("output")
        if output is not None:
            if not isinstance(output, dict):
                raise bad("output is not an object")
            for key in ("title", "summary"):
                if not isinstance(output.get(key), str) or not output[key]:
                    raise bad(f"output.{key} wasn't supplied")
            for key in ("summary", "text"):
                if isinstance(output.get(key), str) and len(output[key]) > TEXT_LIMIT:
                    raise bad(f"output.{key} is longer than {TEXT_LIMIT} characters")
            anns = output.get("annotations", [])
            if not isinstance(anns, list) or len(anns) > 50:
                raise bad("output.annotations: at most 50 per request")
            for a in anns:
                for key in ("path", "start_line", "end_line", "annotation_level", "message"):
                    if key not in a:
                        raise bad(f"annotation without {key}")
                if not isinstance(a["start_line"], int) or not isinstance(a["end_line"], int) \
                        or a["start_line"] < 1 or a["end_line"] < a["start_line"]:
                    raise bad("annotation lines are not positive integers in order")
                if a["annotation_level"] not in ANNOTATION_LEVELS:
                    raise bad(f"annotation_level {a['annotation_level']!r}")
                if ("start_column" in a or "end_column" in a) and \
                        a["start_line"] != a["end_line"]:
                    raise bad("start_column/end_column only on one line")
                for key in ("message", "raw_details"):
                    if len(str(a.get(key, "")).encode()) > ANNOTATION_TEXT_LIMIT:
                        raise bad(f"annotation {key} over 64 KB (in bytes)")
                if len(str(a.get("title", ""))) > ANNOTATION_TITLE_LIMIT:
                    raise bad(f"annotation title over {ANNOTATION_TITLE_LIMIT} characters")
            for img in output.get("images", []):
                if not img.get("alt") or not img.get("image_url"):
                    raise bad("image without alt/image_url")
        actions = body.get("actions")
        if actions is not None:
            if not isinstance(actions, list) or len(actions) > 3:
                raise bad("actions: at most 3")
            for act in actions:
                for key, limit in (("label", 20), ("description", 40), ("identifier", 20)):
                    if not isinstance(act.get(key), str) or not act[key]:
                        raise bad(f"action without {key}")
                    if len(act[key]) > limit:
                        raise bad(f"action {key} longer than {limit}")

    def _apply_cr(self, cr: dict[str, Any], body: dict[str, Any]) -> None:
        for key in ("name", "details_url", "external_id", "started_at", "completed_at",
                    "status", "conclusion", "actions"):
            if key in body:
                cr[key] = body[key]
        if body.get("conclusion"):
            cr["status"] = "completed"
        output = body.get("output")
        if output:
            anns = output.get("annotations", [])
            cr["annotations"].extend(anns)
            cr["images"] = output.get("images", cr["images"])
            cr["output"].update({k: v for k, v in output.items()
                                 if k in ("title", "summary", "text")})
            cr["output"]["annotations_count"] = len(cr["annotations"])
        cr["history"].append(body)

    def _create_cr(self, rec: Recorded, base: str, o: str, r: str) -> tuple[int, Any,
                                                                              dict[str, str]]:
        self._validate_cr(rec, rec.body, creating=True)
        cid = self._next_id()
        cr: dict[str, Any] = {
            "id": cid, "owner": o, "repo": r, "name": rec.body["name"],
            "head_sha": rec.body["head_sha"], "status": "queued", "conclusion": None,
            "external_id": "", "details_url": None, "started_at": None, "completed_at": None,
            "output": {"title": None, "summary": None, "text": None, "annotations_count": 0},
            "annotations": [], "images": [], "actions": [], "history": [],
            "app": {"id": int(self.app_id) if self.app_id.isdigit() else self.app_id}}
        self._apply_cr(cr, rec.body)
        self.check_runs[cid] = cr
        return 201, self._cr_json(cr, base), {}

    def _find_cr(self, o: str, r: str, id: str) -> dict[str, Any]:
        cr = self.check_runs.get(int(id))
        if cr is None or (cr["owner"].lower(), cr["repo"].lower()) != (o.lower(), r.lower()):
            raise _error(404, "Not Found")
        return cr

    def _update_cr(self, rec: Recorded, base: str, o: str, r: str, id: str) -> \
            tuple[int, Any, dict[str, str]]:
        cr = self._find_cr(o, r, id)
        self._validate_cr(rec, rec.body, creating=False, existing=cr)
        self._apply_cr(cr, rec.body)
        return 200, self._cr_json(cr, base), {}

    def _get_cr(self, rec: Recorded, base: str, o: str, r: str, id: str) -> \
            tuple[int, Any, dict[str, str]]:
        return 200, self._cr_json(self._find_cr(o, r, id), base), {}

    def _list_cr(self, rec: Recorded, base: str, o: str, r: str, ref: str) -> \
            tuple[int, Any, dict[str, str]]:
        names = rec.query.get("check_name")
        name = names[0] if names else None
        runs = [self._cr_json(cr, base) for cr in self.check_runs.values()
                if (cr["owner"].lower(), cr["repo"].lower()) == (o.lower(), r.lower())
                and cr["head_sha"] == ref and (name is None or cr["name"] == name)]
        runs.reverse()   # newest first, like GitHub
        chunk, links = self._page(rec, runs, f"{base}/repos/{o}/{r}/commits/{ref}/check-runs")
        return 200, {"total_count": len(runs), "check_runs": chunk}, links

    def _page(self, rec: Recorded, items: list[Any], url: str) -> \
            tuple[list[Any], dict[str, str]]:
        """One page of ``items`` (``per_page``, default 30; ``page``) and its Link header."""
        try:
            per_page = min(100, int((rec.query.get("per_page") or [str(LIST_PER_PAGE)])[0]))
            page = max(1, int((rec.query.get("page") or ["1"])[0]))
        except ValueError:
            raise _error(422, "Invalid pagination") from None
        keep = "".join(f"&{k}={v}" for k, vs in rec.query.items()
                       if k not in ("per_page", "page") for v in vs)
        last = max(1, (len(items) + per_page - 1) // per_page)
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []
        if page < last:
            links.append(f'<{url}?per_page={per_page}&page={page + 1}{keep}>; rel="next"')
            links.append(f'<{url}?per_page={per_page}&page={last}{keep}>; rel="last"')
        if page > 1:
            links.append(f'<{url}?per_page={per_page}&page={page - 1}{keep}>; rel="prev"')
            links.append(f'<{url}?per_page={per_page}&page=1{keep}>; rel="first"')
        return chunk, ({"Link": ", ".join(links)} if links else {})

    def _cr_json(self, cr: dict[str, Any], base: str) -> dict[str, Any]:
        out = {k: v for k, v in cr.items() if k not in ("annotations", "history", "owner",
                                                          "repo", "images", "actions")}
        out["output"] = dict(cr["output"])
        out["url"] = f"{base}/repos/{cr['owner']}/{cr['repo']}/check-runs/{cr['id']}"
        out["pull_requests"] = []
        return out

    def _list_comments(self, rec: Recorded, base: str, o: str, r: str, n: str) -> \
            tuple[int, Any, dict[str, str]]:
        items = self.comments.get((o.lower(), r.lower(), int(n)), [])
        chunk, links = self._page(rec, items, f"{base}/repos/{o}/{r}/issues/{n}/comments")
        return 200, chunk, links

    def _comment_body(self, rec: Recorded) -> str:
        body = rec.body.get("body") if isinstance(rec.body, dict) else None
        if not isinstance(body, str) or not body:
            self._violation(rec, '"body" wasn\'t supplied')
            raise _error(422, "Invalid request.\n\n\"body\" wasn't supplied.")
        if len(body) > COMMENT_LIMIT:
            self._violation(rec, "comment body over 65536 characters")
            raise _error(422, "Validation Failed",
                         errors=[{"resource": "IssueComment", "code": "custom", "field": "body",
                                  "message": "body is too long (maximum is 65536 characters)"}])
        return body

    def _create_comment(self, rec: Recorded, base: str, o: str, r: str, n: str) -> \
            tuple[int, Any, dict[str, str]]:
        body = self._comment_body(rec)
        return 201, self._new_comment(o, r, int(n), body, self.bot_login, "Bot",
                                      {"id": int(self.app_id), "slug": self.slug}), {}

    def _update_comment(self, rec: Recorded, base: str, o: str, r: str, id: str) -> \
            tuple[int, Any, dict[str, str]]:
        body = self._comment_body(rec)
        for (co, cr, _), items in self.comments.items():
            if (co, cr) != (o.lower(), r.lower()):
                continue
            for c in items:
                if c["id"] == int(id):
                    if c["user"]["login"] != self.bot_login:
                        self._violation(rec, "editing someone else's comment")
                        raise _error(403, "Resource not accessible by integration")
                    c["body"] = body
                    c["updated_at"] = iso(time.time())
                    return 200, c, {}
        raise _error(404, "Not Found")


_INVALID_JSON = object()


class _APIHandler(BaseHTTPRequestHandler):
    owner: GitHubStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:   # keep test output quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner._sockets.add(self.connection)

    def finish(self) -> None:
        with self.owner._lock:
            self.owner._sockets.discard(self.connection)
        super().finish()

    def _serve(self) -> None:
        if self.owner.outage:                 # a network failure: no answer at all
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = _INVALID_JSON
        rec = Recorded(self.command, parts.path, parse_qs(parts.query),
                       {k.lower(): v for k, v in self.headers.items()}, body)
        host = self.headers.get("Host") or "127.0.0.1"
        status, payload, headers = self.owner.handle(rec, f"http://{host}")
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


# -- helpers for tests ---------------------------------------------------------------------------

def app_settings(tmp_path: Path, standin: GitHubStandIn, private_pem: bytes,
                 **overrides: Any) -> Settings:
    """Settings of a Diffie whose GitHub is ``standin`` (app id, key file, API URL)."""
    key = tmp_path / "github-app.pem"
    key.write_bytes(private_pem)
    values: dict[str, Any] = {"github_app_id": standin.app_id, "github_private_key_path": key,
                              "github_api_url": standin.url, "data_dir": tmp_path / "data",
                              "public_url": "https://diffie.example.com",
                              "github_webhook_secret": "s3cret", "github_process_drafts": False}
    values.update(overrides)
    return Settings(**values)

__all__ = ["GitHubStandIn", "GitRequest", "GitSmartHTTP", "Recorded", "app_settings",
           "commit_files", "git", "iso", "make_rsa_key", "publish_bare"]
