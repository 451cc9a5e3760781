"""An attacker's app verified the way a user runs Diffie (`diffie check --wait --json`, the
embedded worker, real Chromium): the internal service's canary reaches no verdict, report,
artifact or trace, nothing connects to it, and every attempt is a `blocked_request`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PAGE, Site
from tests.paths import REPO_ROOT
from tests.security.attacks import ATTACKS, AttackApp, CanaryServer, attack_spec, leaks

pytestmark = pytest.mark.integration
PICKED = ("nav-location", "redirect-nav", "fetch", "iframe", "websocket", "file-nav")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[CanaryServer, AttackApp]]:
    with CanaryServer() as secret:
        canary_file = tmp_path / "passwd"
        canary_file.write_text(f"root:x:0:0:{secret.canary}:/root:/bin/bash\n")
        with AttackApp(secret, canary_file) as app:
            yield secret, app


def _check(base: str, head: str, spec: Path, data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIFFIE_")}
    env.update(DIFFIE_DATA_DIR=str(data), DIFFIE_HEARTBEAT_S="1")
    return subprocess.run(
        [sys.executable, "-m", "diffie.cli", "check", "--base-url", base, "--head-url", head,
         "--spec", str(spec), "--wait", "--json"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_an_attacking_app_leaks_nothing_and_its_attempts_are_findings(
        tmp_path: Path, servers: tuple[CanaryServer, AttackApp]) -> None:
    secret, app = servers
    attacks = tuple(a for a in ATTACKS if a.name in PICKED)
    spec = tmp_path / "attack.yml"
    spec.write_text(attack_spec(attacks))
    data = tmp_path / "data"
    with Site({f"/{a.name}": PAGE % "" for a in attacks}) as benign:
        # base: a benign app with the same paths; head: the attacker's
        done = _check(benign.url, app.url, spec, data)
    assert done.returncode == 1, done.stderr[-2000:]
    verdict = json.loads(done.stdout)
    assert verdict["status"] == "fail"
    blocked = {f["flow"] for f in verdict["findings"]
               if f["kind"] == "blocked_request" and not f["pre_existing"]}
    network = {a.name for a in attacks if not a.name.startswith("file")}
    assert blocked == network
    assert secret.connections == 0 and secret.paths == []
    assert secret.canary not in done.stdout + done.stderr
    assert leaks(secret.canary, data) == []
