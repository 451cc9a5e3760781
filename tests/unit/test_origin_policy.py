"""The origin policy of a side whose app has several services: each service's origin is an
app origin (both fences: the route's ``allows`` and the dead proxy's bypass list); any other
port of the same host stays blocked."""

from __future__ import annotations

import pytest

from diffie.origins import OriginError, OriginPolicy, check_navigation

WEB, API = "http://127.0.0.1:47100", "http://127.0.0.1:47101"


class _Dead:
    server = "http://127.0.0.1:9"


def test_every_service_origin_is_an_app_origin() -> None:
    policy = OriginPolicy.for_app([WEB, API], ["https://fonts.example.com"],
                                  ["http://assets.corp:8080"])
    assert str(policy.app) == WEB                      # the default service's
    assert [str(o) for o in policy.app_origins] == [WEB, API]
    for url in (f"{WEB}/", f"{API}/orders?x=1", "ws://127.0.0.1:47101/live",
                "https://fonts.example.com/css", "http://assets.corp:8080/a.png"):
        assert policy.allows(url), url
        assert check_navigation(policy, url) is None
    assert policy.is_app(f"{API}/x") and not policy.is_app("https://fonts.example.com/")
    # the same host's other ports (another forwarded guest port, the host's own services)
    for url in ("http://127.0.0.1:47102/", "http://127.0.0.1:5432/", "http://localhost:47101/",
                "https://127.0.0.1:47101/", "file:///etc/passwd"):
        assert not policy.allows(url), url
    refused = check_navigation(policy, "http://127.0.0.1:47102/")
    assert refused == ("'http://127.0.0.1:47102/' is outside the app's origins "
                       f"{WEB}, {API} and the allowed origins")
    assert policy.proxy(_Dead()) == {
        "server": "http://127.0.0.1:9",
        "bypass": "127.0.0.1:47100,127.0.0.1:47101,fonts.example.com:443,assets.corp:8080"}


def test_one_url_is_the_policy_it_always_was() -> None:
    policy = OriginPolicy.for_app(WEB)
    assert policy.app_origins == (policy.app,) and policy.app_label == f"origin {WEB}"
    assert policy.proxy(_Dead())["bypass"] == "127.0.0.1:47100"
    assert not policy.allows(f"{API}/")
    assert check_navigation(policy, f"{API}/") == (
        f"'{API}/' is outside the app's origin {WEB} and the allowed origins")


def test_service_urls_must_be_web_urls() -> None:
    with pytest.raises(OriginError):
        OriginPolicy.for_app([WEB, "file:///etc"])
    with pytest.raises(OriginError):
        OriginPolicy.for_app([])
