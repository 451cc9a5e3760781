"""Repo mode through the API and the queue, with a stand-in sandbox (real git, real worker, real
Chromium; the VM is replaced): one lease per side, one clock instant per run, and what a failing
deploy does. The real VM path has its system tests (tests/system/).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from diffie.app_context import AppContext
from diffie.composition import build_context, job_deps, with_deps
from diffie.control import Quiet
from diffie.fakes import DEPLOY_FAILS, FakeSandbox, static_deploy
from diffie.pipeline import run_change
from diffie.run_store import ChangeInput
from tests.conftest import (
    PAGE,
    LiveServer,
    finished,
    git,
    make_repo,
    make_settings,
    submit_repo,
)
from workers.embedded import EmbeddedWorker

SPEC = """\
viewports:
  desktop: {width: 800, height: 600}
flows:
  - name: home
    steps:
      - goto: /
      - click: {selector: "#buy", timeout_ms: 1500}
      - screenshot: home
sandbox:
  image: shop
  deploy: ["./build.sh"]
  port: 8000
"""
BUTTON = PAGE % '<button id="buy">Buy</button>'


@pytest.fixture
def sandbox() -> FakeSandbox:
    """One VM slot: head after base, so each side's events read in order below (both sides
    at once: tests/unit/test_vm_sides.py)."""
    return FakeSandbox(slots=1)


@pytest.fixture
def api(tmp_path: Path, sandbox: FakeSandbox,
        live_api: Callable[[AppContext], LiveServer]) -> Iterator[httpx.Client]:
    ctx = with_deps(build_context(make_settings(tmp_path / "data", noise_floor=True)),
                    sandbox=sandbox, deploy=static_deploy)
    server = live_api(ctx)
    with EmbeddedWorker(ctx.celery), httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
    ctx.close()


def run_repo(api: httpx.Client, repo: Path, base: str, head: str) -> dict[str, Any]:
    return finished(api, submit_repo(api, repo, base, head), timeout=300)


def tree(html: str, build: str = "true", spec: str = SPEC) -> dict[str, str]:
    files = {"index.html": html, "health": "ok", "build.sh": f"#!/bin/sh\n{build}\n",
             ".diffie.yml": spec}
    if "exit 1" in build:        # the fake deployer fails, with this as the command's output
        files[DEPLOY_FAILS] = "SyntaxError: invalid syntax (app.py, line 3)"
    return files


def test_one_lease_per_side_and_one_clock(api: httpx.Client, sandbox: FakeSandbox,
                                          tmp_path: Path) -> None:
    repo, (base, head) = make_repo(tmp_path, [tree(BUTTON), tree(PAGE % "")])
    run = run_repo(api, repo, base, head)
    assert run["status"] == "done", run["reason"]
    verdict = run["verdict"]
    assert verdict["status"] == "fail"
    assert [(f["kind"], f["step"]) for f in verdict["findings"]] == [("step_failed", 1)]
    events = [e[0] for e in sandbox.log if e[0] != "exec"]      # exec: journal reads
    # each side: deploy, checkpoint, clock again; head's noise-floor render starts from head's
    # deployed state too (tests/integration/test_flow_reset.py tests the order in detail)
    assert events == ["lease", "set_clock", "put_tree", "checkpoint", "set_clock", "destroy",
                      "lease", "set_clock", "put_tree", "checkpoint", "set_clock",
                      "reset", "set_clock", "destroy"]
    clocks = {e[1] for e in sandbox.log if e[0] == "set_clock"}
    assert len(clocks) == 1                                   # the same instant on both sides
    assert run["change"]["mode"] == "repo"


def test_head_that_fails_to_deploy_is_a_deploy_error(api: httpx.Client, sandbox: FakeSandbox,
                                                     tmp_path: Path) -> None:
    repo, (base, head) = make_repo(tmp_path, [tree(BUTTON), tree(BUTTON, build="exit 1")])
    run = run_repo(api, repo, base, head)
    assert run["status"] == "done", run["reason"]
    verdict = run["verdict"]
    assert verdict["status"] == "fail"
    (finding,) = verdict["findings"]
    assert finding["kind"] == "deploy_error"
    assert finding["details"]["command"] == "./build.sh"
    assert "SyntaxError" in finding["details"]["output_tail"]
    assert [e[0] for e in sandbox.log].count("lease") == 2
    assert [e[0] for e in sandbox.log][-1] == "destroy"


def test_base_that_fails_to_deploy_is_an_error(api: httpx.Client, sandbox: FakeSandbox,
                                               tmp_path: Path) -> None:
    repo, (base, head) = make_repo(tmp_path, [tree(BUTTON, build="exit 1"), tree(BUTTON)])
    run = run_repo(api, repo, base, head)
    assert run["status"] == "error"
    assert "failed to deploy, so there is nothing to compare against" in run["reason"]
    assert "./build.sh" in run["reason"] and "SyntaxError" in run["reason"]
    assert [e[0] for e in sandbox.log if e[0] != "exec"] == \
        ["lease", "set_clock", "put_tree", "destroy"]


def test_invalid_spec_in_the_head_tree_is_an_error_naming_line_and_field(
        api: httpx.Client, sandbox: FakeSandbox, tmp_path: Path) -> None:
    bad = SPEC.replace("- goto: /", "- goto: {}")
    # Submission validates the head's spec at once (422) ...
    repo, (base, head) = make_repo(tmp_path, [tree(BUTTON), tree(BUTTON, spec=bad)])
    resp = api.post("/v1/runs", json={"repo": str(repo), "base": base, "head": head})
    assert resp.status_code == 422
    assert ".diffie.yml:6 (flows[0].steps[0])" in resp.json()["detail"][0]["msg"]
    # ... and the worker, reading the spec from the head tree, ends the run with the reason.
    settings = make_settings(tmp_path / "direct")
    deps = job_deps(settings, None, sandbox=sandbox)

    def verify(head_rev: str) -> str:
        verdict = run_change(ChangeInput(run_id=head_rev[:12], mode="repo", repo=str(repo),
                                         base_rev=base, head_rev=head_rev), deps, Quiet())
        assert verdict.status == "error"
        return verdict.reason or ""

    assert ".diffie.yml:6 (flows[0].steps[0]): a goto step needs a url" in verify(head)
    (repo / ".diffie.yml").write_text(SPEC.split("sandbox:")[0])
    git(repo, "commit", "-qam", "drop the sandbox section")
    assert "no 'sandbox' section" in verify(git(repo, "rev-parse", "HEAD"))
    (repo / ".diffie.yml").unlink()
    git(repo, "commit", "-qam", "drop the spec")
    assert ".diffie.yml not found at head" in verify(git(repo, "rev-parse", "HEAD"))
    assert sandbox.log == []
