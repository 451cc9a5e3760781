"""The GitHub client over real HTTP on loopback, against the GitHub stand-in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from diffie.errors import GitHubError, GitHubUnavailable
from diffie.github.client import GitHubClient
from tests.github_standin import GitHubStandIn, app_settings, make_rsa_key

pytestmark = pytest.mark.integration

PRIVATE, PUBLIC = make_rsa_key()
SHA = "a" * 40


@pytest.fixture
def standin() -> Iterator[GitHubStandIn]:
    with GitHubStandIn(app_id="4242", public_key_pem=PUBLIC) as s:
        yield s


@pytest.fixture
def client(tmp_path, standin: GitHubStandIn) -> Iterator[GitHubClient]:
    settings = app_settings(tmp_path, standin, PRIVATE)
    with GitHubClient.from_settings(settings, backoff_s=0.05) as c:
        yield c


def create_check_run(client: GitHubClient) -> dict[str, Any]:
    created: dict[str, Any] = client.post("/repos/octo/shop/check-runs", installation_id=7,
                                          json={"name": "Diffie", "head_sha": SHA,
                                                "status": "queued"})
    return created


def test_installation_token_exchange_and_headers(client: GitHubClient,
                                                  standin: GitHubStandIn) -> None:
    create_check_run(client)
    create_check_run(client)
    token_calls = standin.calls("POST", r"/app/installations/7/access_tokens")
    assert len(token_calls) == 1                           # cached for the second request
    assert token_calls[0].auth == "jwt"
    app_jwt = token_calls[0].headers["authorization"].removeprefix("Bearer ")
    claims = jwt.decode(app_jwt, PUBLIC, algorithms=["RS256"])
    assert claims["iss"] == "4242"
    assert claims["iat"] <= time.time() - 55 and claims["exp"] <= time.time() + 600
    runs = standin.calls("POST", r"/repos/octo/shop/check-runs")
    assert [r.auth for r in runs] == ["token", "token"]
    assert all(r.headers["authorization"] == f"Bearer {standin.issued_tokens()[0]}"
               for r in runs)
    assert standin.violations == []


def test_expired_token_is_refreshed_on_401(client: GitHubClient, standin: GitHubStandIn) -> None:
    create_check_run(client)
    standin.expire_tokens()                                 # GitHub now says 401
    created = create_check_run(client)
    assert created["name"] == "Diffie"
    statuses = [r.status for r in standin.calls("POST", r"/repos/octo/shop/check-runs")]
    assert statuses == [201, 401, 201]
    assert len(standin.calls("POST", r"/app/installations/7/access_tokens")) == 2
    assert standin.violations == []


def test_short_lived_token_is_refreshed_before_expiry(tmp_path, standin: GitHubStandIn) -> None:
    standin.token_ttl_s = 300 + 1           # inside the 5-minute refresh margin almost at once
    with GitHubClient.from_settings(app_settings(tmp_path, standin, PRIVATE)) as c:
        create_check_run(c)
        time.sleep(1.2)
        create_check_run(c)
    assert len(standin.calls("POST", r"/app/installations/7/access_tokens")) == 2
    assert [r.status for r in standin.calls("POST", r"/repos/octo/shop/check-runs")] == [201, 201]


def test_502_once_then_success(client: GitHubClient, standin: GitHubStandIn) -> None:
    standin.fail_next("POST", r"/repos/octo/shop/check-runs", 502,
                      body={"message": "Server Error"})
    assert create_check_run(client)["id"]
    assert [r.status for r in standin.calls("POST", r"/repos/octo/shop/check-runs")] == [502, 201]


def test_secondary_rate_limit_with_retry_after(client: GitHubClient,
                                               standin: GitHubStandIn) -> None:
    standin.fail_next("POST", r"/repos/octo/shop/check-runs", 403,
                      headers={"retry-after": "1"},
                      body={"message": "You have exceeded a secondary rate limit. Please wait "
                                       "a few minutes before you try again.",
                            "documentation_url": "https://docs.github.com/rest/overview/"
                                                 "rate-limits-for-the-rest-api"})
    t0 = time.monotonic()
    assert create_check_run(client)["id"]
    assert time.monotonic() - t0 >= 0.95
    assert [r.status for r in standin.calls("POST", r"/repos/octo/shop/check-runs")] == [403, 201]


def test_404_names_the_request(client: GitHubClient, standin: GitHubStandIn) -> None:
    with pytest.raises(GitHubError) as info:
        client.patch("/repos/octo/shop/check-runs/999999", installation_id=7,
                     json={"status": "in_progress"})
    assert str(info.value) == "GitHub PATCH /repos/octo/shop/check-runs/999999: 404 Not Found"
    assert info.value.status == 404


def test_422_names_the_request_and_githubs_message(client: GitHubClient,
                                                   standin: GitHubStandIn) -> None:
    with pytest.raises(GitHubError) as info:
        client.post("/repos/octo/shop/check-runs", installation_id=7, json={"name": "Diffie"})
    msg = str(info.value)
    assert msg.startswith("GitHub POST /repos/octo/shop/check-runs: 422 Invalid request.")
    assert "head_sha" in msg
    for token in standin.issued_tokens():
        assert token not in msg
    standin.violations.clear()          # that request was wrong on purpose


def test_github_down_is_unavailable_and_never_shows_the_token(tmp_path,
                                                              standin: GitHubStandIn) -> None:
    settings = app_settings(tmp_path, standin, PRIVATE)
    with GitHubClient.from_settings(settings, backoff_s=0.01, max_retries=2) as c:
        token = c.installation_token(7)
        standin.stop()                                        # connection refused from now on
        with pytest.raises(GitHubUnavailable) as info:
            create_check_run(c)
    assert "network error" in str(info.value) and "POST /repos/octo/shop/check-runs" in str(
        info.value)
    assert token not in str(info.value)


def test_persistent_5xx_is_unavailable(client: GitHubClient, standin: GitHubStandIn) -> None:
    standin.fail_next("GET", r"/repos/octo/shop/check-runs/\d+", 503, times=10)
    with pytest.raises(GitHubUnavailable) as info:
        client.get("/repos/octo/shop/check-runs/1", installation_id=7)
    assert info.value.status == 503
    assert len(standin.calls("GET", r"/repos/octo/shop/check-runs/1")) == client.max_retries + 1
