"""Signed links (diffie.links), token scopes (diffie.api.auth), URL-mode origins (diffie.url_mode)
and the settings behind them: pure logic."""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from diffie import links
from diffie.api.auth import Token, parse_tokens
from diffie.cli import is_loopback
from diffie.config import Settings
from diffie.errors import ConfigError
from diffie.url_mode import is_allowed, parse_allowed, strict_origin
from tests.conftest import make_settings

NOW = 1_800_000_000


# --- signed links -------------------------------------------------------------------------------

def test_signed_report_url_shape_and_check(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "d", public_url="https://d.example/", signed_url_ttl_s=600)
    url = links.report_url(s, "run1", expires=NOW + 600)
    prefix = "https://d.example/v1/runs/run1/signed/"
    assert url.startswith(prefix) and url.endswith("/report/")
    expires, sig = url[len(prefix):].split("/")[:2]
    assert int(expires) == NOW + 600 and len(sig) == 64
    links.check(s, "run1", "report/", NOW + 600, sig, now=NOW)      # valid: no exception


@pytest.mark.parametrize("change", ["run", "path", "expires", "sig", "key"])
def test_any_change_breaks_the_signature(tmp_path: Path, change: str) -> None:
    s = make_settings(tmp_path / "d")
    sig = links.signature(s, "run1", "artifacts/a.png", NOW + 60)
    run, path, exp = "run1", "artifacts/a.png", NOW + 60
    if change == "run":
        run = "run2"
    elif change == "path":
        path = "artifacts/b.png"
    elif change == "expires":
        exp += 3600
    elif change == "sig":
        sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    else:
        s = make_settings(tmp_path / "other")           # another data dir: another key
    with pytest.raises(links.LinkProblem, match="signature does not match"):
        links.check(s, run, path, exp, sig, now=NOW)


def test_expired_link_says_when(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "d")
    sig = links.signature(s, "r", "report/", NOW)
    with pytest.raises(links.LinkProblem, match="expired at 2027-01-15 08:00:00 UTC"):
        links.check(s, "r", "report/", NOW, sig, now=NOW)
    links.check(s, "r", "report/", NOW, sig, now=NOW - 1)


def test_key_file_is_created_once_private_and_shared(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "d")
    keys: list[bytes] = []

    def load() -> None:
        links._keys.clear()
        keys.append(links.signing_key(s))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    path = tmp_path / "d" / links.KEY_FILE
    assert len(set(keys)) == 1 and keys[0] == path.read_text().strip().encode()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [links.KEY_FILE]      # no temp files
    links._keys.clear()                      # a restart: the same key, links still valid
    assert links.signing_key(s) == keys[0]


def test_configured_key_wins_and_must_be_long(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "d", url_signing_key="x" * 40)
    assert links.signing_key(s) == b"x" * 40
    assert not (tmp_path / "d" / links.KEY_FILE).exists()
    with pytest.raises(ValidationError, match="at least 32 characters"):
        make_settings(tmp_path / "d", url_signing_key="short")


def test_fresh_report_url_keeps_foreign_hosts(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "d", public_url="https://d.example")
    old = links.report_url(s, "r", expires=NOW)
    fresh = links.fresh_report_url(s, "r", old)
    assert fresh != old and fresh.startswith("https://d.example/v1/runs/r/signed/")
    assert links.fresh_report_url(s, "r", None).startswith("https://d.example/v1/runs/r/signed/")
    assert links.fresh_report_url(s, "r", "https://elsewhere/r") == "https://elsewhere/r"


# --- token scopes -------------------------------------------------------------------------------

def test_token_entries_and_scopes() -> None:
    got = parse_tokens(["plain", "read:r-tok", "submit:s-tok", "read+submit:b-tok",
                        "SUBMIT+READ:c", " ", "abc:def"])
    assert got == [Token("plain", frozenset({"read", "submit"})),
                   Token("r-tok", frozenset({"read"})), Token("s-tok", frozenset({"submit"})),
                   Token("b-tok", frozenset({"read", "submit"})),
                   Token("c", frozenset({"read", "submit"})),
                   Token("abc:def", frozenset({"read", "submit"}))]      # as before scopes


def test_token_entry_errors_and_warnings(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError, match="entry 2 .read:. has no token"):
        parse_tokens(["ok", "read:"])
    with caplog.at_level(logging.WARNING):
        parse_tokens(["reed:tok"], warn=True)
    assert "'reed:', which is not a scope" in caplog.text


def test_tokens_setting_splits_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFIE_API_TOKENS", "a, read:b ,,submit:c")
    assert Settings().api_tokens == ["a", "read:b", "submit:c"]


# --- URL-mode origins ---------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "origin"), [
    ("http://127.0.0.1:8001/x?y#z", "http://127.0.0.1:8001"),
    ("HTTP://LocalHost/", "http://localhost:80"),
    ("https://app.example", "https://app.example:443"),
    ("http://[::1]:9000/", "http://[::1]:9000"),
])
def test_strict_origin(url: str, origin: str) -> None:
    assert strict_origin(url) == origin


@pytest.mark.parametrize(("url", "words"), [
    ("ftp://x/", "http:// or https://"),
    ("http:/x", "http:// or https://"),
    ("http://allowed:80@127.0.0.1:6379/", "user name or password"),
    ("http://127.0.0.1:6379\\@127.0.0.1:8001/", "backslashes"),
    ("http://127.0.0.1:80 01/", "spaces"),
    ("http://127.0.0.1%3a6379/", "plain host"),
    ("http://127.0.0.1:99999/", "invalid port"),
    ("http://127.0.0.1:*/", "numeric port"),
    ("http://-x-/", "invalid host"),
])
def test_strict_origin_refuses_what_parsers_may_read_differently(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        strict_origin(url)


def test_allowed_origins_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFIE_URL_MODE_ORIGINS", "http://127.0.0.1:8001, https://App.example/,"
                       "http://localhost:*")
    allowed = Settings().url_mode_origins
    assert allowed == ["http://127.0.0.1:8001", "https://app.example:443", "http://localhost:*"]
    assert is_allowed("http://127.0.0.1:8001", allowed)
    assert not is_allowed("http://127.0.0.1:8002", allowed)
    assert not is_allowed("http://127.0.0.1:8001".replace("http", "https"), allowed)
    assert is_allowed("http://localhost:6379", allowed)
    assert not is_allowed("http://127.0.0.1:6379", allowed)
    monkeypatch.setenv("DIFFIE_URL_MODE_ORIGINS", "http://127.0.0.1:8001/path")
    with pytest.raises(ValidationError, match="entry 1 .* without a path"):
        Settings()
    with pytest.raises(ValueError, match="entry 2"):
        parse_allowed(["http://a:1", "gopher://b"])
    monkeypatch.delenv("DIFFIE_URL_MODE_ORIGINS")
    assert Settings().url_mode_origins == []


# --- serve: loopback or not ---------------------------------------------------------------------

@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False), ("192.0.2.1", False),
    ("no-such-host.invalid", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_serve_insecure_open_is_the_only_way_to_an_open_non_loopback_api(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    from diffie import cli

    served: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: served.append(host))
    monkeypatch.setenv("DIFFIE_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("DIFFIE_DATABASE_URL", "")
    monkeypatch.setenv("DIFFIE_API_TOKENS", "")
    assert cli.main(["serve", "--host", "0.0.0.0", "--no-worker"]) == 2
    assert served == [] and "refusing to serve on 0.0.0.0" in capsys.readouterr().err
    assert cli.main(["serve", "--host", "0.0.0.0", "--no-worker", "--insecure-open"]) == 0
    assert served == ["0.0.0.0"] and "THE DIFFIE API IS OPEN" in capsys.readouterr().err
    monkeypatch.setenv("DIFFIE_API_TOKENS", "read:r,s3cret")
    assert cli.main(["serve", "--host", "0.0.0.0", "--no-worker"]) == 0
    assert served[-1] == "0.0.0.0" and "OPEN" not in capsys.readouterr().err
