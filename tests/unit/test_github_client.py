"""The REST client's auth, retry and rate-limit logic, against httpx.MockTransport (fast).
The same behaviours are exercised over real HTTP in tests/integration/test_github_api.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from diffie.errors import GitHubError, GitHubUnavailable
from diffie.github.auth import AppAuth
from diffie.github.client import GitHubClient
from tests.github_standin import iso, make_rsa_key

PRIVATE, PUBLIC = make_rsa_key()
T0 = 1_700_000_000.0


class Fake:
    """Scripted GitHub: token endpoint plus a handler for everything else."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.requests: list[httpx.Request] = []
        self.tokens_issued = 0
        self.token_ttl = 3600.0
        self.script: list[Callable[[httpx.Request], httpx.Response]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/access_tokens"):
            self.tokens_issued += 1
            return httpx.Response(201, json={"token": f"ghs_{'x' * 30}{self.tokens_issued}",
                                             "expires_at": iso(self.clock[0] + self.token_ttl)})
        if self.script:
            return self.script.pop(0)(request)
        return httpx.Response(200, json={"ok": True})


def make(clock: list[float] | None = None, **kwargs: Any) -> tuple[GitHubClient, Fake,
                                                                    list[float]]:
    clock = clock or [T0]
    fake = Fake(clock)
    sleeps: list[float] = []
    client = GitHubClient(AppAuth("42", PRIVATE, clock=lambda: clock[0]),
                          base_url="https://api.example.test", transport=httpx.MockTransport(fake),
                          sleep=sleeps.append, clock=lambda: clock[0], backoff_s=0.5, **kwargs)
    return client, fake, sleeps


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> \
        Callable[[httpx.Request], httpx.Response]:
    return lambda req: httpx.Response(status, json=body if body is not None else {},
                                      headers=headers)


def api_calls(fake: Fake) -> list[httpx.Request]:
    return [r for r in fake.requests if not r.url.path.endswith("/access_tokens")]


def test_headers_and_installation_auth() -> None:
    client, fake, _ = make()
    client.get("/repos/o/r", installation_id=7)
    token_req, api_req = fake.requests
    assert token_req.method == "POST" and token_req.url.path == "/app/installations/7/access_tokens"
    app_jwt = token_req.headers["authorization"].removeprefix("Bearer ")
    claims = jwt.decode(app_jwt, PUBLIC, algorithms=["RS256"],
                        options={"verify_exp": False, "verify_iat": False})
    assert claims["iss"] == "42"
    for req in (token_req, api_req):
        assert req.headers["accept"] == "application/vnd.github+json"
        assert req.headers["x-github-api-version"] == "2022-11-28"
        assert req.headers["user-agent"].startswith("Diffie")
    assert api_req.headers["authorization"] == f"Bearer ghs_{'x' * 30}1"


def test_installation_token_is_cached_then_refreshed_before_expiry() -> None:
    client, fake, _ = make()
    for _ in range(3):
        client.get("/repos/o/r", installation_id=7)
    assert fake.tokens_issued == 1
    fake.clock[0] = T0 + 3600 - 290          # within 5 minutes of expires_at
    client.get("/repos/o/r", installation_id=7)
    assert fake.tokens_issued == 2
    client.get("/repos/o/r", installation_id=8)   # another installation, another token
    assert fake.tokens_issued == 3


def test_401_refreshes_the_token_once_and_retries() -> None:
    client, fake, _ = make()
    client.get("/repos/o/r", installation_id=7)
    fake.script = [reply(401, {"message": "Bad credentials"})]
    assert client.get("/repos/o/r", installation_id=7) == {"ok": True}
    assert fake.tokens_issued == 2
    calls = api_calls(fake)
    assert calls[-1].headers["authorization"].endswith("2")


def test_401_twice_is_an_error() -> None:
    client, fake, _ = make()
    fake.script = [reply(401, {"message": "Bad credentials"})] * 2
    with pytest.raises(GitHubError) as info:
        client.get("/repos/o/r", installation_id=7)
    assert info.value.status == 401
    assert "GET /repos/o/r" in str(info.value)


def test_502_then_success_backs_off() -> None:
    client, fake, sleeps = make()
    fake.script = [reply(502, {"message": "Server Error"})]
    assert client.post("/repos/o/r/check-runs", installation_id=1, json={}) == {"ok": True}
    assert len(api_calls(fake)) == 2
    assert len(sleeps) == 1 and 0.3 <= sleeps[0] <= 0.5


def test_network_error_then_success() -> None:
    client, fake, sleeps = make()

    def boom(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=req)

    fake.script = [boom]
    assert client.get("/x", installation_id=1) == {"ok": True}
    assert len(sleeps) == 1


def test_5xx_exhausted_is_unavailable_with_exponential_backoff() -> None:
    client, fake, sleeps = make(max_retries=3)
    fake.script = [reply(503, {"message": "Unavailable"})] * 4
    with pytest.raises(GitHubUnavailable) as info:
        client.patch("/repos/o/r/check-runs/1", installation_id=1, json={})
    assert info.value.status == 503
    assert "PATCH /repos/o/r/check-runs/1" in str(info.value)
    assert len(sleeps) == 3
    assert sleeps[0] < sleeps[1] < sleeps[2]


def test_no_server_error_retry_when_asked() -> None:
    client, fake, sleeps = make()
    fake.script = [reply(502)]
    with pytest.raises(GitHubUnavailable):
        client.post("/c", installation_id=1, json={}, retry_server_errors=False)
    assert sleeps == []


def test_secondary_rate_limit_retry_after_is_honoured() -> None:
    client, fake, sleeps = make()
    fake.script = [reply(403, {"message": "You have exceeded a secondary rate limit."},
                         {"retry-after": "1"})]
    assert client.get("/x", installation_id=1) == {"ok": True}
    assert sleeps == [1.0]


def test_primary_rate_limit_waits_until_reset() -> None:
    client, fake, sleeps = make()
    fake.script = [reply(403, {"message": "API rate limit exceeded"},
                         {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(T0) + 9)})]
    client.get("/x", installation_id=1)
    assert sleeps == [10.0]


def test_429_with_retry_after() -> None:
    client, fake, sleeps = make()
    fake.script = [reply(429, {"message": "Too many"}, {"retry-after": "2"})]
    client.get("/x", installation_id=1)
    assert sleeps == [2.0]


def test_long_rate_limit_is_unavailable_with_retry_after() -> None:
    client, fake, sleeps = make()
    fake.script = [reply(403, {"message": "secondary rate limit"}, {"retry-after": "3600"})]
    with pytest.raises(GitHubUnavailable) as info:
        client.get("/x", installation_id=1)
    assert info.value.retry_after == 3600.0
    assert sleeps == []


def test_plain_403_is_not_retried() -> None:
    client, fake, sleeps = make()
    fake.script = [reply(403, {"message": "Resource not accessible by integration"})]
    with pytest.raises(GitHubError) as info:
        client.get("/repos/o/r/issues/1/comments", installation_id=1)
    assert not isinstance(info.value, GitHubUnavailable)
    assert info.value.status == 403 and sleeps == []
    assert "Resource not accessible by integration" in str(info.value)


def test_404_names_method_path_and_message() -> None:
    client, fake, _ = make()
    fake.script = [reply(404, {"message": "Not Found"})]
    with pytest.raises(GitHubError) as info:
        client.patch("/repos/o/r/check-runs/99", installation_id=1, json={})
    err = info.value
    assert (err.status, err.method, err.path) == (404, "PATCH", "/repos/o/r/check-runs/99")
    assert str(err) == "GitHub PATCH /repos/o/r/check-runs/99: 404 Not Found"


def test_422_includes_validation_errors() -> None:
    client, fake, _ = make()
    fake.script = [reply(422, {"message": "Validation Failed", "errors": [
        {"resource": "CheckRun", "field": "head_sha", "code": "missing_field"},
        "No commit found for SHA: abc"]})]
    with pytest.raises(GitHubError) as info:
        client.post("/repos/o/r/check-runs", installation_id=1, json={})
    msg = str(info.value)
    assert "POST /repos/o/r/check-runs: 422 Validation Failed" in msg
    assert "CheckRun head_sha missing_field" in msg and "No commit found for SHA" in msg


def test_token_never_in_error_messages() -> None:
    client, fake, _ = make()
    token = client.installation_token(1)

    def echo(req: httpx.Request) -> httpx.Response:   # a server that echoes credentials
        return httpx.Response(422, json={"message": f"bad {req.headers['authorization']}",
                                         "errors": [f"token {token}"]})

    fake.script = [echo]
    with pytest.raises(GitHubError) as info:
        client.get("/x", installation_id=1)
    assert token not in str(info.value) and token not in repr(info.value.args)
    assert token not in repr(client) and "BEGIN" not in repr(client.app)


def test_pagination_follows_link_next_on_the_same_host_only() -> None:
    client, fake, _ = make()
    base = "https://api.example.test/repos/o/r/issues/1/comments"
    fake.script = [
        lambda req: httpx.Response(200, json=[1, 2], headers={
            "link": f'<{base}?per_page=2&page=2>; rel="next", <{base}?page=3>; rel="last"'}),
        lambda req: httpx.Response(200, json=[3], headers={
            "link": '<https://evil.example/steal?page=3>; rel="next"'}),
    ]
    items = []
    with pytest.raises(GitHubError, match="refusing to send credentials"):
        for item in client.paginate("/repos/o/r/issues/1/comments", installation_id=1,
                                    per_page=2):
            items.append(item)
    assert items == [1, 2, 3]
    first, second = api_calls(fake)
    assert first.url.params["per_page"] == "2"
    assert second.url.params["page"] == "2"


def test_app_endpoint_uses_the_jwt() -> None:
    client, fake, _ = make()
    client.get("/app", installation_id=None)
    (req,) = fake.requests
    assert req.headers["authorization"].startswith("Bearer eyJ")
    assert fake.tokens_issued == 0


def test_token_response_without_token_is_an_error() -> None:
    clock = [T0]
    client = GitHubClient(AppAuth("42", PRIVATE, clock=lambda: clock[0]),
                          base_url="https://api.example.test",
                          transport=httpx.MockTransport(lambda r: httpx.Response(201, json={})),
                          sleep=lambda s: None)
    with pytest.raises(GitHubError, match="without a token"):
        client.installation_token(3)


def test_json_bodies_are_sent() -> None:
    client, fake, _ = make()
    client.post("/repos/o/r/issues/1/comments", installation_id=1, json={"body": "hi"})
    assert json.loads(api_calls(fake)[0].content) == {"body": "hi"}
