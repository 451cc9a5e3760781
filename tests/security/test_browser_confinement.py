"""The browser reaches the app under test and nothing else (issue: untrusted changes stay inside
the sandbox). Real Chromium, a real attacker app and a real "internal service" holding a canary,
all on this machine's loopback. For every attack: the internal service is never connected to,
the canary appears in no capture, artifact or trace, and the attempt is a ``blocked_request``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from diffie.artifacts import ArtifactDir
from diffie.browser import BrowserRunner
from diffie.capture import Capture
from diffie.compare.logs import log_findings
from diffie.config import Settings
from diffie.errors import SpecError
from diffie.origins import OriginError, OriginPolicy, parse_third_party_origin
from diffie.spec import Step, parse_spec
from tests.security.attacks import ATTACKS, AttackApp, CanaryServer, attack_spec, leaks

pytestmark = pytest.mark.integration
CLOCK = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def secret() -> Iterator[CanaryServer]:
    with CanaryServer() as server:
        yield server


@pytest.fixture(scope="module")
def canary_file(tmp_path_factory: pytest.TempPathFactory, secret: CanaryServer) -> Path:
    path = tmp_path_factory.mktemp("host") / "passwd"
    path.write_text(f"root:x:0:0:{secret.canary}:/root:/bin/bash\n")
    return path


@pytest.fixture(scope="module")
def app(secret: CanaryServer, canary_file: Path) -> Iterator[AttackApp]:
    with AttackApp(secret, canary_file) as server:
        yield server


def _settings(tmp: Path) -> Settings:
    return Settings(data_dir=tmp / "data", chromium_path="/usr/bin/chromium")


def _run_attacks(tmp: Path, app: AttackApp, *, route_fence: bool = True, proxy_fence: bool = True,
                 attacks: tuple[Any, ...] = ATTACKS) -> tuple[list[Capture], Path]:
    spec = parse_spec(attack_spec(attacks))
    out = tmp / "artifacts"
    with BrowserRunner(_settings(tmp), route_fence=route_fence, proxy_fence=proxy_fence) as runner:
        captures = runner.run_all(spec, app.url, "head", ArtifactDir(out), clock=CLOCK)
    (out / "captures.json").write_text(json.dumps([c.model_dump() for c in captures]))
    return captures, out


def test_every_attack_is_blocked_and_nothing_leaks(tmp_path: Path, app: AttackApp,
                                                   secret: CanaryServer) -> None:
    before = secret.connections
    captures, out = _run_attacks(tmp_path, app)
    assert secret.connections == before, f"the internal service was reached: {secret.paths}"
    assert leaks(secret.canary, out) == []
    by_flow = {c.flow: c for c in captures}
    network_attacks = [a for a in ATTACKS if a.name.split("-")[0] not in ("file", "data", "chrome")]
    for attack in network_attacks:
        capture = by_flow[attack.name]
        findings = log_findings(None, capture)
        blocked = [f for f in findings if f.kind == "blocked_request"]
        assert blocked, f"{attack.name}: no blocked_request finding ({[f.kind for f in findings]})"
        assert str(secret.port) in blocked[0].message
        assert all(f.is_error for f in blocked)
    # the failing expect_text never quotes a page of another origin
    for capture in captures:
        for step in capture.steps:
            assert secret.canary not in (step.error or "")


def test_the_route_fence_alone_blocks_every_direct_request(tmp_path: Path, app: AttackApp,
                                                           secret: CanaryServer) -> None:
    """Routing holds alone for every request and navigation. What it cannot see is the proxy
    fence's job: redirect hops (Playwright does not route them), WebSockets, and the bare TCP
    connection Chromium opens speculatively when a navigation starts (no byte is sent on it)."""
    direct = tuple(a for a in ATTACKS if not a.redirect and a.name != "websocket")
    before = len(secret.paths)
    captures, out = _run_attacks(tmp_path, app, proxy_fence=False, attacks=direct)
    assert secret.paths[before:] == [], "a request reached the internal service"
    assert leaks(secret.canary, out) == []
    assert len(captures) == len(direct)


def test_the_proxy_fence_alone_blocks_every_connection(tmp_path: Path, app: AttackApp,
                                                       secret: CanaryServer) -> None:
    before = secret.connections
    _captures, out = _run_attacks(tmp_path, app, route_fence=False)
    assert secret.connections == before, f"reached: {secret.paths}"
    assert leaks(secret.canary, out) == []


def test_the_app_still_works_on_its_own_origin(tmp_path: Path, app: AttackApp) -> None:
    spec = parse_spec("flows:\n  - name: home\n    viewports: [desktop]\n    steps:\n"
                      "      - goto: /fetch\n      - expect_text: {selector: h1, text: app}\n"
                      "      - screenshot: home\n")
    with BrowserRunner(_settings(tmp_path)) as runner:
        [capture] = runner.run_all(spec, app.url, "head", ArtifactDir(tmp_path / "a"), clock=CLOCK)
    assert capture.completed and capture.failed_step() is None
    assert [r.blocked for r in capture.requests] == [True]


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "http://127.0.0.1:6379/", "//127.0.0.1:5432/", "/\\127.0.0.1:5432/",
    "chrome://version", "data:text/html,x", "javascript:alert(1)", "view-source:/", "products",
])
def test_the_spec_may_only_goto_a_path_of_the_app(url: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(f"flows:\n  - name: a\n    steps:\n      - goto: {json.dumps(url)}\n")
    assert ".diffie.yml:4 (flows[0].steps[0])" in str(err.value)
    assert "a goto step takes a path of the app" in str(err.value)


def test_a_goto_outside_the_origin_is_refused_at_run_time_too(tmp_path: Path, app: AttackApp,
                                                              secret: CanaryServer) -> None:
    """Defence in depth: a step that escaped validation is still refused before navigating."""
    spec = parse_spec("flows:\n  - name: a\n    viewports: [desktop]\n    steps:\n      - goto: /\n")
    flow = spec.flows[0]
    flow.steps[0] = Step.model_construct(**{**flow.steps[0].model_dump(), "url": secret.url + "/"})
    before = secret.connections
    with BrowserRunner(_settings(tmp_path)) as runner:
        [capture] = runner.run_all(spec, app.url, "head", ArtifactDir(tmp_path / "a"), clock=CLOCK)
    step = capture.failed_step()
    assert step is not None and step.error is not None and "goto refused" in step.error
    assert secret.connections == before


@pytest.mark.parametrize("origin", [
    "http://127.0.0.1:6379", "http://localhost:8000", "http://10.0.0.1", "http://[::1]:80",
    "http://169.254.169.254", "http://metadata", "http://admin.internal", "https://x.local",
    "file:///etc", "https://cdn.example.com/path", "https://user:pw@cdn.example.com",
])
def test_a_spec_may_only_allow_public_names(origin: str) -> None:
    with pytest.raises(OriginError):
        parse_third_party_origin(origin)
    with pytest.raises(SpecError) as err:
        parse_spec(f"allowed_origins: [{json.dumps(origin)}]\nflows:\n  - name: a\n    steps:\n"
                   "      - goto: /\n")
    assert "allowed_origins" in str(err.value)


def test_allowed_origins_extend_the_policy() -> None:
    spec = parse_spec("allowed_origins: [\"https://fonts.example.com\"]\nflows:\n  - name: a\n"
                      "    steps:\n      - goto: /\n")
    policy = OriginPolicy.for_app("http://127.0.0.1:47101", spec.allowed_origins,
                                  ["http://assets.corp:8080"])
    assert policy.allows("http://127.0.0.1:47101/x") and policy.allows("ws://127.0.0.1:47101/ws")
    assert policy.allows("https://fonts.example.com/css?family=x")
    assert policy.allows("http://assets.corp:8080/a.png")
    assert not policy.allows("http://127.0.0.1:47102/x")
    assert not policy.allows("https://fonts.example.com:8443/")
    assert not policy.allows("http://fonts.example.com/")
    assert not policy.allows("file:///etc/passwd")
    assert policy.proxy(_Dead()) == {
        "server": "http://127.0.0.1:9",
        "bypass": "127.0.0.1:47101,fonts.example.com:443,assets.corp:8080"}


class _Dead:
    server = "http://127.0.0.1:9"
