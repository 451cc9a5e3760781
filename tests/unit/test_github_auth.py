"""GitHub App JWT and redaction."""

from __future__ import annotations

import jwt
import pytest

from diffie.config import Settings
from diffie.errors import ConfigError
from diffie.github.auth import AppAuth, InstallationToken, parse_expires_at
from diffie.redact import redact
from tests.github_standin import make_rsa_key

PRIVATE, PUBLIC = make_rsa_key()
NOW = 1_700_000_000.0


def test_jwt_claims_are_signed_rs256_with_backdated_iat_and_short_exp() -> None:
    auth = AppAuth("12345", PRIVATE, clock=lambda: NOW)
    token = auth.jwt()
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, PUBLIC, algorithms=["RS256"], options={"verify_exp": False,
                                                                       "verify_iat": False})
    assert claims == {"iat": int(NOW) - 60, "exp": int(NOW) + 9 * 60, "iss": "12345"}
    assert claims["exp"] - NOW < 10 * 60          # GitHub refuses exp > 10 minutes ahead


def test_jwt_does_not_verify_with_another_key() -> None:
    _, other_public = make_rsa_key()
    token = AppAuth("1", PRIVATE).jwt()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other_public, algorithms=["RS256"])


def test_bad_private_key_is_a_config_error_without_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        AppAuth("1", b"-----BEGIN RSA PRIVATE KEY-----\nnot-a-key\n-----END RSA PRIVATE KEY-----")
    assert "not-a-key" not in str(info.value)


def test_from_settings_needs_app_id_and_key(tmp_path) -> None:
    with pytest.raises(ConfigError, match="APP_ID"):
        AppAuth.from_settings(Settings(github_app_id=""))
    with pytest.raises(ConfigError, match="PRIVATE_KEY_PATH"):
        AppAuth.from_settings(Settings(github_app_id="7"))
    with pytest.raises(ConfigError, match="cannot read"):
        AppAuth.from_settings(Settings(github_app_id="7",
                                       github_private_key_path=tmp_path / "missing.pem"))
    key = tmp_path / "app.pem"
    key.write_bytes(PRIVATE)
    assert AppAuth.from_settings(Settings(github_app_id="7", github_private_key_path=key)).app_id \
        == "7"


def test_token_cache_honours_the_refresh_margin() -> None:
    now = [NOW]
    auth = AppAuth("1", PRIVATE, clock=lambda: now[0])
    auth.store_token(5, InstallationToken("ghs_abc", NOW + 3600))
    assert auth.cached_token(5) == "ghs_abc"
    now[0] = NOW + 3600 - 301          # more than 5 minutes left: still used
    assert auth.cached_token(5) == "ghs_abc"
    now[0] = NOW + 3600 - 299          # less than 5 minutes left: refresh
    assert auth.cached_token(5) is None
    assert auth.cached_token(6) is None


def test_invalidate_only_drops_the_token_that_failed() -> None:
    auth = AppAuth("1", PRIVATE, clock=lambda: NOW)
    auth.store_token(5, InstallationToken("ghs_new", NOW + 3600))
    auth.invalidate(5, "ghs_old")      # another thread already refreshed it
    assert auth.cached_token(5) == "ghs_new"
    auth.invalidate(5, "ghs_new")
    assert auth.cached_token(5) is None


def test_token_repr_hides_the_secret() -> None:
    assert "ghs_" not in repr(InstallationToken("ghs_supersecret", NOW))


def test_parse_expires_at() -> None:
    assert parse_expires_at("2016-07-11T22:14:10Z") == 1468275250.0


@pytest.mark.parametrize("text", [
    "token ghs_16C7e42F292c6912E7710c838347Ae178B4a in the way",
    "Authorization: Basic eC1hY2Nlc3MtdG9rZW46Z2hzX3NlY3JldA==",
    "Authorization: Bearer something-secret",
    "https://x-access-token:s3cr3t@github.com/o/r.git",
    "jwt eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0.c2lnbmF0dXJl here",
])
def test_redact_removes_token_shapes(text: str) -> None:
    out = redact(text)
    for secret in ("ghs_16C7", "eC1hY2Nl", "something-secret", "s3cr3t", "c2lnbmF0dXJl"):
        assert secret not in out
    assert "***" in out


def test_redact_removes_given_secrets() -> None:
    assert redact("the token is plainsecret!", "plainsecret") == "the token is ***!"
