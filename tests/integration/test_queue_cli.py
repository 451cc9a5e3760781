"""The CLI as a user runs it (subprocesses, the embedded defaults: SQLite + embedded broker).

- ``diffie check --wait``: with no worker running, one starts in the process; the exit code
  says pass (0) / fail (1) / changed (3) / error (2); ``--json`` prints the verdict.
- ``diffie serve --host H --port P``: the API with an embedded worker, on real HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import jsonschema
from jsonschema import Draft202012Validator

from diffie import run_store
from diffie.cli_output import SCHEMA_PATH
from diffie.composition import build_context
from tests.conftest import PAGE, Site, free_port, make_settings, wait_until
from tests.paths import FIXTURES, REPO_ROOT

SPEC = """\
viewports:
  desktop: {width: 800, height: 600}
noise_floor: false
flows:
  - name: home
    steps:
      - goto: /
      - click: {selector: "#buy", timeout_ms: 1500}
      - screenshot: home
"""


VALIDATOR = Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def valid(stdout: str) -> dict[str, Any]:
    """The one JSON object ``stdout`` holds, checked against the CLI's output schema."""
    data: dict[str, Any] = json.loads(stdout)
    errors = [e.message for e in VALIDATOR.iter_errors(data)]
    assert not errors, errors
    return data


def diffie_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIFFIE_")}
    env.update(DIFFIE_DATA_DIR=str(data_dir), DIFFIE_HEARTBEAT_S="1",
               DIFFIE_PUBLIC_URL="http://127.0.0.1:1")
    return env


def diffie(args: list[str], data_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "diffie.cli", *args], cwd=REPO_ROOT,
                          env=diffie_env(data_dir), capture_output=True, text=True,
                          timeout=timeout, check=False)


CTRF_SCHEMA = json.loads((FIXTURES / "ctrf" / "ctrf.schema.json").read_text(encoding="utf-8"))


def assert_ci_outputs(junit: Path, ctrf: Path, run_id: str, *, failed: int) -> None:
    """``--junit-out`` / ``--ctrf-out`` wrote the run's reports: JUnit XML with its suite and
    failures, CTRF valid against the CTRF JSON Schema."""
    root = ElementTree.parse(junit).getroot()
    suite = root.find("testsuite") if root.tag == "testsuites" else root
    assert suite is not None and run_id in suite.get("name", "")
    assert int(suite.get("failures", "0")) + int(suite.get("errors", "0")) >= failed
    report = json.loads(ctrf.read_text())
    jsonschema.validate(report, CTRF_SCHEMA)
    assert report["results"]["summary"]["failed"] >= failed


def test_check_exit_codes_and_json(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yml"
    spec.write_text(SPEC)
    data = tmp_path / "data"
    button = '<button id="buy">Buy</button>'
    with Site({"/": PAGE % button}) as base, Site({"/": PAGE % ""}) as head:
        same = diffie(["check", "--base-url", base.url, "--head-url", base.url,
                       "--spec", str(spec), "--wait"], data)
        assert same.returncode == 0, same.stderr
        assert same.stdout.startswith("verdict: pass")
        assert "no worker is running: starting one in this process" in same.stderr
        assert "phase: browse" in same.stderr                      # progress on stderr
        report = Path(same.stdout.strip().splitlines()[-1].removeprefix("report: "))
        assert report.name == "index.html" and report.is_file()

        outputs = tmp_path / "ci"
        broken = diffie(["check", "--base-url", base.url, "--head-url", head.url,
                         "--spec", str(spec), "--json", "--junit-out", str(outputs / "j.xml"),
                         "--ctrf-out", str(outputs / "ctrf.json")], data)   # implies --wait
        assert broken.returncode == 1, broken.stderr
        verdict = valid(broken.stdout)
        assert_ci_outputs(outputs / "j.xml", outputs / "ctrf.json", verdict["run_id"],
                          failed=1)
        assert verdict["status"] == "fail"
        assert Path(verdict["report_path"]).name == "index.html"
        assert Path(verdict["report_path"]).is_file()
        assert [(f["kind"], f["step"]) for f in verdict["findings"]
                if f["kind"] == "step_failed"] == [("step_failed", 1)]

    shown = diffie(["runs", "show", verdict["run_id"], "--json"], data)
    assert shown.returncode == 0 and json.loads(shown.stdout)["verdict_status"] == "fail"

    unreachable = diffie(["check", "--base-url", "http://127.0.0.1:9", "--head-url",
                          "http://127.0.0.1:9", "--spec", str(spec), "--wait",
                          "--ctrf-out", str(tmp_path / "error-ctrf.json")], data)
    assert unreachable.returncode == 2
    assert "unreachable" in unreachable.stdout
    ctrf = json.loads((tmp_path / "error-ctrf.json").read_text())
    jsonschema.validate(ctrf, CTRF_SCHEMA)                   # an error run has a report too
    assert ctrf["results"]["summary"]["failed"] >= 1

    spec.write_text(SPEC.replace("- goto: /", "- goto:"))
    invalid = diffie(["check", "--base-url", "http://x", "--head-url", "http://y",
                      "--spec", str(spec)], data)
    assert invalid.returncode == 2
    assert f"{spec}:7 (flows[0].steps[0]): a goto step needs a url" in invalid.stderr

    missing = diffie(["runs", "show", "nope"], data)
    assert missing.returncode == 2


def test_every_json_outcome_is_one_object_on_stdout(tmp_path: Path) -> None:
    """Bad input, a spec error, an unknown run, a command line that does not parse: exit 2
    and one error object on stdout (valid against the published schema), never only stderr."""
    spec = tmp_path / "spec.yml"
    spec.write_text(SPEC.replace("- goto: /", "- goto:"))
    data = tmp_path / "data"
    invalid = diffie(["check", "--base-url", "http://x", "--head-url", "http://y",
                      "--spec", str(spec), "--json"], data)
    error = valid(invalid.stdout)["error"]
    assert invalid.returncode == 2
    assert (error["code"], error["file"], error["line"], error["field"]) == \
        ("spec_error", str(spec), 7, "flows[0].steps[0]")

    no_repo = diffie(["verify", "--repo", str(tmp_path / "none"), "--base", "a", "--head", "b",
                      "--json"], data)
    error = valid(no_repo.stdout)["error"]
    assert no_repo.returncode == 2 and (error["code"], error["input"]) == ("bad_input", "--repo")

    no_head = diffie(["verify", "--repo", str(tmp_path), "--base", "a", "--json"], data)
    error = valid(no_head.stdout)["error"]
    assert (error["code"], error["input"]) == ("bad_input", "--head")
    assert "--worktree" in error["message"]
    both = diffie(["verify", "--repo", str(tmp_path), "--worktree", "--head", "b", "--json"],
                  data)
    assert valid(both.stdout)["error"]["input"] == "--head"
    repo = tmp_path / "clean"
    repo.mkdir()
    (repo / "a.txt").write_text("a\n")
    for git in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t",
                                                 "commit", "-q", "-m", "a"]):
        subprocess.run(["git", *git], cwd=repo, check=True)
    clean = diffie(["verify", "--repo", str(repo), "--worktree", "--json"], data)
    error = valid(clean.stdout)["error"]
    assert clean.returncode == 2 and error["input"] == "--base"
    assert "has no changes against HEAD" in error["message"]

    missing = diffie(["runs", "show", "nope", "--json"], data)
    assert missing.returncode == 2 and valid(missing.stdout)["error"]["code"] == "not_found"
    gone = diffie(["runs", "cancel", "nope", "--json"], data)
    error = valid(gone.stdout)["error"]
    assert gone.returncode == 2 and (error["code"], error["input"]) == ("not_found", "RUN_ID")

    ctx = build_context(make_settings(data))          # a queued run no worker takes
    try:
        run_id = run_store.submit_url(ctx.db, base_url="http://127.0.0.1:9",
                                      head_url="http://127.0.0.1:9", spec_text=SPEC)
    finally:
        ctx.close()
    cancelled = diffie(["runs", "cancel", run_id, "--json", "--reason", "not needed"], data)
    assert cancelled.returncode == 0, cancelled.stderr
    assert valid(cancelled.stdout) == {"status": "cancelled", "run_id": run_id}
    shown = json.loads(diffie(["runs", "show", run_id, "--json"], data).stdout)
    assert (shown["status"], shown["reason"]) == ("cancelled", "not needed")
    twice = diffie(["runs", "cancel", run_id, "--json"], data)
    assert twice.returncode == 2
    assert "already finished (cancelled)" in valid(twice.stdout)["error"]["message"]

    usage = diffie(["verify", "--repo", "r", "--base", "a", "--head", "b", "--json",
                    "--no-such-flag"], data)
    assert usage.returncode == 2
    assert valid(usage.stdout)["error"]["code"] == "usage_error"
    assert "--no-such-flag" in usage.stdout


@contextmanager
def served(tmp_path: Path, env: dict[str, str], *, worker: bool = True) -> Iterator[str]:
    """``diffie serve`` (the API and its embedded worker, unless not ``worker``) on a free
    port; yields its URL."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "diffie.cli", "serve", "--host",
                                 "127.0.0.1", "--port", str(port),
                                 *([] if worker else ["--no-worker"])], cwd=REPO_ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None
        wait_until(up, timeout=60, what="diffie serve")
        assert proc.poll() is None, log_path.read_text()
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_serve_runs_the_api_and_a_worker(tmp_path: Path) -> None:
    env = diffie_env(tmp_path / "data")
    env["DIFFIE_API_TOKENS"] = "tok1,tok2"
    with Site({"/": PAGE % '<button id="buy">Buy</button>'}) as site:
        env["DIFFIE_URL_MODE_ORIGINS"] = site.url
        with served(tmp_path, env) as url:
            headers = {"Authorization": "Bearer tok2"}
            assert httpx.get(f"{url}/v1/runs", timeout=5).status_code == 401
            resp = httpx.post(f"{url}/v1/runs", headers=headers, timeout=10, json={
                "base_url": site.url, "head_url": site.url, "spec": SPEC})
            assert resp.status_code == 202, resp.text
            run_url = resp.json()["links"]["self"]
            run = wait_until(lambda: (r := httpx.get(run_url, headers=headers).json())["status"]
                             in ("done", "error") and r, timeout=180, what="the run")
            assert run["status"] == "done" and run["verdict"]["status"] == "pass", run
            page = httpx.get(resp.json()["links"]["report"])      # signed: no token needed
            assert page.status_code == 200 and "<html" in page.text.lower()
