"""Issue 9, item 6 and URL mode: the attacks on Diffie's API, reproduced over real HTTP.

- ``diffie serve`` on 0.0.0.0 without tokens (an open API on the network): refused.
- With tokens on, the report links people get (check runs, comments, API output) answered 401,
  pushing operators to run open: now they are signed, expiring links that work without a
  token, and a tampered, re-targeted or expired link is refused (403).
- A token meant for reading could submit runs: tokens are scoped.
- URL mode was a port-scan oracle of the worker's host (``RemoteProtocolError`` for Redis and
  PostgreSQL, ``Connection refused`` for a closed port): the API verifies only origins the
  operator allows, answers the same for every other port whatever listens there (without
  touching it), and an app that does not answer HTTP gets one generic reason.
- ``docker-compose.yml`` published the API on 0.0.0.0 with no token.

Every server here is started by the test on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
import yaml

from diffie import links, run_store
from diffie.app_context import AppContext
from diffie.artifacts import ArtifactDir
from diffie.composition import build_context
from diffie.models import Run
from diffie.verdict import judge
from tests.conftest import (
    PAGE,
    LiveServer,
    Site,
    finished,
    free_port,
    make_settings,
    settings_env,
)
from tests.paths import REPO_ROOT
from workers.embedded import EmbeddedWorker

READ, SUBMIT, BOTH = "r3ad-only-token", "subm1t-only-token", "full-access-token"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
SPEC = "flows:\n  - name: home\n    viewports: [desktop]\n    steps:\n      - goto: /\n"


# --- diffie serve -------------------------------------------------------------------------------

def _serve(tmp_path: Path, host: str, port: int, *extra: str,
           tokens: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, **settings_env(make_settings(tmp_path / "data")),
           "DIFFIE_API_TOKENS": tokens}
    return subprocess.Popen([sys.executable, "-m", "diffie.cli", "serve", "--host", host,
                             "--port", str(port), "--no-worker", *extra],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_open_api_on_all_interfaces_is_refused(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(tmp_path, "0.0.0.0", port)
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, stderr
    assert "refusing to serve on 0.0.0.0" in stderr and "DIFFIE_API_TOKENS" in stderr
    assert "--insecure-open" in stderr
    with socket.socket() as sock:            # nothing listens there
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_open_api_on_loopback_serves_with_a_loud_warning(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(tmp_path, "127.0.0.1", port)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "diffie serve did not start"
            time.sleep(0.2)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert "THE DIFFIE API IS OPEN" in stderr


# --- signed links with tokens on ----------------------------------------------------------------

@pytest.fixture
def guarded(tmp_path: Path, live_api: Callable[[AppContext], LiveServer]) \
        -> Iterator[tuple[AppContext, str, str]]:
    """The API on real HTTP with scoped tokens and one finished run (report + artifacts)."""
    ctx = build_context(make_settings(tmp_path / "data", api_tokens=[
        f"read:{READ}", f"submit:{SUBMIT}", BOTH], public_url="http://public.invalid"))
    ctx.enqueue_fn = lambda run_id: None
    run_id = run_store.submit_url(ctx.db, base_url="http://127.0.0.1:1", head_url="http://127.0.0.1:1",
                             spec_text=SPEC)
    assert run_store.claim(ctx.db, run_id, "w1", stale_after_s=60, max_attempts=3) == "claimed"
    out = ArtifactDir(ctx.settings.artifacts_dir / run_id).ensure()
    verdict = judge(run_id, [], report_url=links.report_url(ctx.settings, run_id))
    out.path("index.html").write_text('<!doctype html><title>report</title><img src="shot.png">')
    out.path("shot.png").write_bytes(PNG)
    out.path("verdict.json").write_text(verdict.model_dump_json())
    assert run_store.record_verdict(ctx.db, run_id, "w1", verdict, out)
    server = live_api(ctx)
    yield ctx, server.url, run_id
    ctx.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_signed_links_work_without_a_token(guarded: tuple[AppContext, str, str]) -> None:
    _, url, run_id = guarded
    # without a token the API stays closed
    assert httpx.get(f"{url}/v1/runs/{run_id}/report/").status_code == 401
    assert httpx.get(f"{url}/v1/runs/{run_id}/artifacts/shot.png").status_code == 401
    run = httpx.get(f"{url}/v1/runs/{run_id}", headers=bearer(READ)).json()
    report = run["links"]["report"]
    assert report.startswith(f"{url}/v1/runs/{run_id}/signed/")
    page = httpx.get(report)                                  # a person clicks: no token
    assert page.status_code == 200 and "<title>report</title>" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    img = httpx.get(urljoin(report, "shot.png"))              # the report's relative image
    assert img.status_code == 200 and img.content == PNG
    no_slash = httpx.get(report.rstrip("/"), follow_redirects=True)
    assert no_slash.status_code == 200 and str(no_slash.url) == report
    artifact = next(a for a in run["artifacts"] if a["name"] == "shot.png")
    assert httpx.get(artifact["url"]).content == PNG
    # the verdict's own link (what check runs and comments carry) is signed for the public URL
    public = run["verdict"]["report_url"]
    assert public.startswith(f"http://public.invalid/v1/runs/{run_id}/signed/")
    assert httpx.get(url + public.removeprefix("http://public.invalid")).status_code == 200


def _parts(link: str, run_id: str) -> tuple[str, str, str]:
    match = re.search(rf"/v1/runs/{run_id}/signed/(\d+)/([0-9a-f]+)/(.*)$", link)
    assert match, link
    return match.group(1), match.group(2), match.group(3)


def test_tampered_retargeted_and_expired_links_are_refused(
        guarded: tuple[AppContext, str, str]) -> None:
    ctx, url, run_id = guarded
    other = run_store.submit_url(ctx.db, base_url="http://127.0.0.1:1", head_url="http://127.0.0.1:1",
                            spec_text=SPEC)
    expires, sig, _ = _parts(links.report_url(ctx.settings, run_id, base=url), run_id)
    art_exp, art_sig, _ = _parts(links.artifact_url(ctx.settings, run_id, "shot.png", base=url),
                                 run_id)
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    forged = {
        "signature altered": f"/v1/runs/{run_id}/signed/{expires}/{flipped}/report/",
        "expiry extended": f"/v1/runs/{run_id}/signed/{int(expires) + 86400}/{sig}/report/",
        "expiry not a time": f"/v1/runs/{run_id}/signed/soon/{sig}/report/",
        "another run": f"/v1/runs/{other}/signed/{expires}/{sig}/report/",
        "another artifact": f"/v1/runs/{run_id}/signed/{art_exp}/{art_sig}/artifacts/verdict.json",
        "artifact link as report": f"/v1/runs/{run_id}/signed/{art_exp}/{art_sig}/report/",
        "unsigned": f"/v1/runs/{run_id}/signed/{expires}//report/",
    }
    for what, path in forged.items():
        resp = httpx.get(url + path)
        assert resp.status_code in (403, 404), (what, resp.status_code, resp.text)
        if resp.status_code == 403:
            assert "this link" in resp.json()["detail"], what
        assert "<title>report</title>" not in resp.text and PNG not in resp.content, what
    assert httpx.get(url + forged["signature altered"]).json()["detail"].startswith(
        "this link is not valid: its signature does not match")
    past = int(time.time()) - 10
    expired = links.report_url(ctx.settings, run_id, base=url, expires=past)
    resp = httpx.get(expired)
    assert resp.status_code == 403 and "this link expired at" in resp.json()["detail"]
    # the same link, not yet expired, works: only the expiry refused it
    assert httpx.get(links.report_url(ctx.settings, run_id, base=url)).status_code == 200


# --- scoped tokens ------------------------------------------------------------------------------

def test_read_token_cannot_submit_and_submit_token_cannot_read(
        guarded: tuple[AppContext, str, str]) -> None:
    ctx, url, run_id = guarded
    body = {"base_url": "http://127.0.0.1:8001", "head_url": "http://127.0.0.1:8002",
            "spec": SPEC}
    refused = httpx.post(f"{url}/v1/runs", json=body, headers=bearer(READ))
    assert refused.status_code == 403
    assert refused.json()["detail"] == "this token lacks the 'submit' scope (it has: read)"
    with ctx.db.session() as s:
        assert s.query(Run).count() == 1            # nothing was submitted
    accepted = httpx.post(f"{url}/v1/runs", json=body, headers=bearer(SUBMIT))
    assert accepted.status_code == 202, accepted.text
    for path in (f"/v1/runs/{run_id}", "/v1/runs", f"/v1/runs/{run_id}/report/",
                 f"/v1/runs/{run_id}/artifacts/shot.png", "/v1/schema/verdict.json"):
        resp = httpx.get(url + path, headers=bearer(SUBMIT))
        assert resp.status_code == 403 and "'read' scope" in resp.json()["detail"], path
        assert httpx.get(url + path, headers=bearer(READ)).status_code == 200, path
        assert httpx.get(url + path, headers=bearer(BOTH)).status_code == 200, path
    assert httpx.post(f"{url}/v1/runs", json=body, headers=bearer(BOTH)).status_code == 202
    assert httpx.post(f"{url}/v1/runs", json=body, headers=bearer("nope")).status_code == 401


# --- URL mode: no port-scan oracle, no SSRF ------------------------------------------------------

class NotHttp:
    """A loopback TCP server speaking another protocol (like Redis): counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.recv(1024)
                conn.sendall(b"-ERR unknown command 'GET'\r\n")

    def __enter__(self) -> NotHttp:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


@pytest.fixture
def not_http() -> Iterator[NotHttp]:
    with NotHttp() as server:
        yield server


@pytest.fixture
def site() -> Iterator[Site]:
    with Site({"/": PAGE % ""}) as s:
        yield s


def _api(tmp_path: Path, live_api: Callable[[AppContext], LiveServer],
         **overrides: Any) -> tuple[AppContext, str]:
    ctx = build_context(make_settings(tmp_path / "data", **overrides))
    ctx.enqueue_fn = lambda run_id: None
    return ctx, live_api(ctx).url


def test_url_mode_is_off_by_default(tmp_path: Path, site: Site,
                                    live_api: Callable[[AppContext], LiveServer]) -> None:
    ctx, url = _api(tmp_path, live_api, url_mode_origins=[])
    try:
        resp = httpx.post(f"{url}/v1/runs", json={"base_url": site.url, "head_url": site.url,
                                                  "spec": SPEC})
        assert resp.status_code == 422
        err = resp.json()["detail"][0]
        assert err["loc"] == ["body", "base_url"] and err["type"] == "url_mode_off"
        assert "Set DIFFIE_URL_MODE_ORIGINS" in err["msg"]
        assert site.hits == []
    finally:
        ctx.close()


def test_url_mode_to_other_loopback_ports_is_refused_with_no_oracle(
        tmp_path: Path, site: Site, not_http: NotHttp,
        live_api: Callable[[AppContext], LiveServer]) -> None:
    ctx, url = _api(tmp_path, live_api, url_mode_origins=[site.url])
    closed = free_port()
    try:
        answers = {}
        for name, port in (("not-http", not_http.port), ("closed", closed)):
            target = f"http://127.0.0.1:{port}/"
            resp = httpx.post(f"{url}/v1/runs", json={"base_url": target, "head_url": site.url,
                                                      "spec": SPEC})
            assert resp.status_code == 422, resp.text
            answers[name] = resp.text.replace(str(port), "PORT")
        assert answers["not-http"] == answers["closed"]          # nothing to tell them apart
        assert "is not allowed for URL mode" in answers["closed"]
        assert "DIFFIE_URL_MODE_ORIGINS" in answers["closed"]
        # a URL that one parser reads as the allowed origin and another as the other port
        for trick in (f"http://127.0.0.1:{not_http.port}\\@{site.url[7:]}/",
                      f"http://{site.url[7:]}@127.0.0.1:{not_http.port}/"):
            resp = httpx.post(f"{url}/v1/runs", json={"base_url": trick, "head_url": site.url,
                                                      "spec": SPEC})
            assert resp.status_code == 422, trick
        assert not_http.connections == 0                         # never even touched
        with ctx.db.session() as s:
            assert s.query(Run).count() == 0
        ok = httpx.post(f"{url}/v1/runs", json={"base_url": site.url, "head_url": site.url,
                                                "spec": SPEC})
        assert ok.status_code == 202, ok.text
    finally:
        ctx.close()


def test_unreachable_app_reason_does_not_say_what_listens(
        tmp_path: Path, site: Site, not_http: NotHttp,
        live_api: Callable[[AppContext], LiveServer]) -> None:
    """Even where the operator allowed a port that turns out not to be the app (a mistake), a
    run's reason is the same for another protocol and for a closed port."""
    closed = free_port()
    allowed = [f"http://127.0.0.1:{not_http.port}", f"http://127.0.0.1:{closed}", site.url]
    ctx = build_context(make_settings(tmp_path / "data", url_mode_origins=allowed))
    server = live_api(ctx)
    try:
        with EmbeddedWorker(ctx.celery), httpx.Client(base_url=server.url, timeout=30) as api:
            reasons = {}
            for name, port in (("not-http", not_http.port), ("closed", closed)):
                resp = api.post("/v1/runs", json={"base_url": f"http://127.0.0.1:{port}/",
                                                  "head_url": site.url, "spec": SPEC})
                assert resp.status_code == 202, resp.text
                run = finished(api, resp.json()["id"], timeout=120)
                assert run["status"] == "error" and run["verdict"]["status"] == "error"
                reasons[name] = run["verdict"]["summary"] + "|" + str(run["reason"])
                reasons[name] = reasons[name].replace(str(port), "PORT")
        assert not_http.connections >= 1                         # it was tried, as allowed
        assert reasons["not-http"] == reasons["closed"], reasons
        assert "the app at http://127.0.0.1:PORT did not answer HTTP" in reasons["closed"]
        for leak in ("RemoteProtocolError", "refused", "Connect", "Error:", "ERR"):
            assert leak not in reasons["not-http"], (leak, reasons)
    finally:
        ctx.close()


# --- docker-compose -----------------------------------------------------------------------------

def test_compose_needs_a_token_and_does_not_publish_the_api_open() -> None:
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    compose = yaml.safe_load(text)
    api = compose["services"]["api"]
    tokens = api["environment"]["DIFFIE_API_TOKENS"]
    # compose refuses to start when the variable is unset or empty (${VAR:?message})
    assert re.fullmatch(r"\$\{DIFFIE_API_TOKENS:\?[^}]+\}", tokens), tokens
    assert "--insecure-open" not in api["command"]
    for port in api.get("ports", []):
        assert str(port).startswith("${DIFFIE_API_BIND:-127.0.0.1}:"), port
    for service in compose["services"].values():
        env = service.get("environment") or {}
        for name in ("DIFFIE_API_TOKENS", "DIFFIE_URL_SIGNING_KEY", "DIFFIE_CALLBACK_SECRET",
                     "POSTGRES_PASSWORD", "DIFFIE_DATABASE_URL"):
            value = str(env.get(name, ""))
            assert value == "" or "${" in value, (name, value)   # no secret inline
    assert "diffie:diffie@" not in text                       # no default database password
    postgres = compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert re.fullmatch(r"\$\{DIFFIE_DB_PASSWORD:\?[^}]+\}", postgres), postgres
