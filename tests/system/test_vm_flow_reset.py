"""The real VM path of two guarantees (the pipeline, libvirt, the shop in its image, Chromium):

- every flow × viewport starts from the deployed state: a flow that signs the seeded user out
  (the shop deletes the session row) completes at both viewports on both sides, because the VM is
  reverted to its post-deploy snapshot in between; a ``reset: false`` flow after it sees the
  sign-out; a failing flow carries the shop's journal (the server's traceback);
- a service that does not start says why: the deploy error carries its journal tail
  (``ModuleNotFoundError``).
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from diffie.composition import job_deps
from diffie.control import Lines, Quiet
from diffie.pipeline import run_change
from diffie.run_store import ChangeInput
from diffie.sandbox.libvirt import LibvirtSandbox
from examples.corpus import CHANGES_DIR, SHOP_DIR, materialize_repo
from tests.conftest import git

from .conftest import vm_settings

pytestmark = [pytest.mark.system, pytest.mark.timeout(1800)]

FLOWS = """\
version: 1
timeout_ms: 8000
viewports:
  desktop: {width: 1280, height: 800}
  mobile: {width: 390, height: 844, mobile: true}
session_cookies:
  - {name: shop_session, value: seeded-session-ada}
noise_floor: false
flows:
  - name: signout               # deletes the seeded session: a write
    signed_in: true
    steps:
      - goto: /account
      - expect_text: {selector: h1, text: "Ada Lovelace"}
      - click: "#signout"                # the shop deletes the session, then shows /
      - expect_visible: "#product-grid"
      - goto: /account
      - expect_url: /signin
  - name: after-signout         # no revert before it: it sees what signout left
    signed_in: true
    reset: false
    viewports: [desktop]
    steps:
      - goto: /account
      - expect_url: /signin
  - name: home
    viewports: [desktop]
    steps:
      - goto: /
      - expect_visible: ".product-card"
"""
ONE_FLOW = """\
version: 1
viewports:
  desktop: {width: 1280, height: 800}
flows:
  - name: home
    steps:
      - goto: /
      - expect_visible: ".product-card"
"""


def shop_with_spec(tmp_path: Path, flows: str, *, ready_timeout_s: int = 30) -> Path:
    """A copy of the shop whose .diffie.yml has ``flows`` and the shop's own sandbox section."""
    app = tmp_path / "shop"
    shutil.copytree(SHOP_DIR, app, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.pyc", ".mypy_cache", "changes"))
    section = "sandbox:" + (SHOP_DIR / ".diffie.yml").read_text().split("\nsandbox:", 1)[1]
    assert "ready_timeout_s: 30" in section
    section = section.replace("ready_timeout_s: 30", f"ready_timeout_s: {ready_timeout_s}")
    (app / ".diffie.yml").write_text(flows + section)
    return app


def test_each_flow_starts_from_the_deployed_state(sandbox: LibvirtSandbox, vm_data: Path,
                                                  tmp_path: Path) -> None:
    app = shop_with_spec(tmp_path, FLOWS)
    base, head = materialize_repo(app, CHANGES_DIR / "api-500-products.patch", tmp_path / "repo")
    settings = vm_settings(vm_data)
    change = ChangeInput(run_id=secrets.token_hex(8), mode="repo", repo=str(tmp_path / "repo"),
                         base_rev=base, head_rev=head)
    lines: list[str] = []
    verdict = run_change(change, job_deps(settings, None, sandbox=sandbox), Lines(lines.append))
    log = "\n".join(lines)
    print("\n".join(line for line in lines if "revert" in line or "checkpoint" in line))

    # signout passes at mobile too (without the revert, both sides would fail there: the
    # session row is gone); after-signout, which opts out of the revert, sees it gone.
    failed_steps = {f.flow for f in verdict.findings if f.kind == "assertion_failed"}
    assert failed_steps == {"home"}, (verdict.findings, log[-3000:])
    # signout lands on / (whose products API the change broke) and goes on to /account: the
    # 500 is always seen (a goto lets the page answer first), never a timing-dependent extra
    signout = [f for f in verdict.findings if f.flow == "signout"]
    assert signout and {f.kind for f in signout} == {"request_failed"}, signout
    assert all("/api/products" in f.message for f in signout), signout
    assert {f.flow for f in verdict.findings} == {"home", "signout"}, verdict.findings
    assert verdict.not_verified == [], verdict.not_verified
    assert {(c.flow, c.viewport) for c in verdict.coverage if not c.verified} == \
        {("home", "desktop")}, verdict.coverage
    assert log.count("VM reverted to the deployed state") == 4, log      # 2 per side
    # head's home fails (the products API answers 500): the shop's own traceback comes along
    assert verdict.status == "fail"
    request = next(f for f in verdict.findings if f.kind == "request_failed" and f.flow == "home")
    server_log = request.details["server_log"]
    assert "UndefinedColumn" in server_log and "rating" in server_log, server_log
    assert len(server_log) <= 16_000 and server_log.count("\n") < 201


def test_a_service_that_does_not_start_says_why(sandbox: LibvirtSandbox, vm_data: Path,
                                                tmp_path: Path) -> None:
    app = shop_with_spec(tmp_path, ONE_FLOW, ready_timeout_s=15)
    base, _ = materialize_repo(app, None, tmp_path / "repo")
    server = tmp_path / "repo" / "app" / "server.py"
    future = "from __future__ import annotations\n"
    assert future in server.read_text()
    server.write_text(server.read_text().replace(
        future, future + "import markdown  # a dependency the image does not have\n", 1))
    git(tmp_path / "repo", "commit", "-qam", "head: import markdown")
    head = git(tmp_path / "repo", "rev-parse", "HEAD")
    change = ChangeInput(run_id=secrets.token_hex(8), mode="repo", repo=str(tmp_path / "repo"),
                         base_rev=base, head_rev=head)
    verdict = run_change(change, job_deps(vm_settings(vm_data), None, sandbox=sandbox), Quiet())
    assert verdict.status == "fail", verdict
    (finding,) = verdict.findings
    assert finding.kind == "deploy_error"
    assert "did not become ready" in finding.message
    assert "ModuleNotFoundError: No module named 'markdown'" in finding.message, finding.message
    assert "ModuleNotFoundError" in finding.details["output_tail"]
