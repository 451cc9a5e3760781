"""The CLI as a client of a shared Diffie (``--server``/``--token``): a real ``diffie serve``
with tokens, the CLI in another data directory (it cannot see the server's database), URL
mode with Chromium; the same JSON contract as locally, errors included; uncommitted work
sent as a patch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import httpx

from tests.conftest import PAGE, Site
from tests.integration.test_queue_cli import (
    SPEC,
    assert_ci_outputs,
    diffie_env,
    served,
    valid,
)
from tests.paths import REPO_ROOT


def client(args: list[str], data: Path, timeout: float = 300,
           **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "diffie.cli", *args], cwd=REPO_ROOT,
                          env={**diffie_env(data), **env}, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_check_through_a_server_prints_the_same_verdict_and_errors(tmp_path: Path) -> None:
    env = diffie_env(tmp_path / "server")
    env["DIFFIE_API_TOKENS"] = "read:r3ad,subm1t"
    spec = tmp_path / "spec.yml"
    spec.write_text(SPEC)
    bad = tmp_path / "bad.yml"
    bad.write_text("flows:\n  - name: home\n    steps:\n      - goto: {}\n")
    with Site({"/": PAGE % '<button id="buy">Buy</button>'}) as site:
        env["DIFFIE_URL_MODE_ORIGINS"] = site.url
        with served(tmp_path, env) as url:
            check = ["check", "--base-url", site.url, "--head-url", site.url, "--wait", "--json"]
            ci = tmp_path / "ci"
            done = client([*check, "--spec", str(spec), "--server", url, "--token", "subm1t",
                           "--junit-out", str(ci / "junit.xml"), "--ctrf-out",
                           str(ci / "ctrf.json")], tmp_path / "cli")
            assert done.returncode == 0, done.stderr
            verdict = valid(done.stdout)
            assert_ci_outputs(ci / "junit.xml", ci / "ctrf.json", verdict["run_id"], failed=0)
            assert list(ElementTree.parse(ci / "junit.xml").getroot().iter("testcase"))
            assert verdict["status"] == "pass" and "/signed/" in verdict["report_url"]
            assert "browse" in done.stderr and f"on {url}" in done.stderr   # progress, by SSE
            shown = client(["runs", "show", verdict["run_id"], "--json"], tmp_path / "cli",
                           DIFFIE_SERVER=url, DIFFIE_TOKEN="r3ad")
            assert shown.returncode == 0 and '"status": "done"' in shown.stdout

            refused = client([*check, "--spec", str(spec), "--server", url, "--token", "r3ad"],
                             tmp_path / "cli")
            error = valid(refused.stdout)["error"]
            assert refused.returncode == 2 and error["code"] == "config_error"
            assert "403" in error["message"] and "--token" in error["message"]

            broken = client([*check, "--spec", str(bad)], tmp_path / "cli",
                            DIFFIE_SERVER=url, DIFFIE_TOKEN="subm1t")
            error = valid(broken.stdout)["error"]
            assert broken.returncode == 2 and error["code"] == "spec_error", error
            assert error["line"] == 4 and "goto" in error["message"]

            unknown = client(["runs", "cancel", "0123456789abcdef", "--json"],
                             tmp_path / "cli", DIFFIE_SERVER=url, DIFFIE_TOKEN="subm1t")
            assert valid(unknown.stdout)["error"]["code"] == "not_found"
        gone = client([*check, "--spec", str(spec), "--server", url], tmp_path / "cli")
        error = valid(gone.stdout)["error"]
        assert gone.returncode == 2 and "cannot reach the Diffie server" in error["message"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def test_uncommitted_work_goes_to_the_server_as_a_patch(tmp_path: Path) -> None:
    origin = tmp_path / "repos" / "shop.git"
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    git(work, "config", "user.email", "t@example.com")
    git(work, "config", "user.name", "t")
    (work / "app.css").write_text("body { color: black; }\n")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "base")
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(origin)], check=True)
    git(work, "remote", "add", "origin", str(origin))
    (work / "app.css").write_text("body { color: red; }\n")
    (work / "new.js").write_text("console.log('hi')\n")

    env = diffie_env(tmp_path / "server")
    env.update(DIFFIE_API_TOKENS="subm1t", DIFFIE_REPO_MODE_SOURCES=str(origin.parent))
    with served(tmp_path, env, worker=False) as url:
        queued = client(["verify", "--repo", str(work), "--worktree", "--json"],
                        tmp_path / "cli", DIFFIE_SERVER=url, DIFFIE_TOKEN="subm1t")
        assert queued.returncode == 0, queued.stderr
        run_id = valid(queued.stdout)["run_id"]
        run = httpx.get(f"{url}/v1/runs/{run_id}", timeout=10,
                        headers={"Authorization": "Bearer subm1t"}).json()
        assert run["change"]["repo"] == str(origin)
        assert run["change"]["head"].startswith("diff:")
        assert run["change"]["base"] == git(work, "rev-parse", "HEAD").strip()
        cancelled = client(["runs", "cancel", run_id, "--json"], tmp_path / "cli",
                           DIFFIE_SERVER=url, DIFFIE_TOKEN="subm1t")
        assert valid(cancelled.stdout)["status"] == "cancelled"
    assert git(work, "status", "--porcelain").count("\n") == 2      # the work is untouched
