"""Issue 9, "input limits": each attack reproduced against the real thing (the API on HTTP, the
embedded broker and worker, Chromium, local HTTP servers on 127.0.0.1). Each test failed on
the code before the limits: the alias bomb held the request thread for seconds, a 5,000-flow
spec was accepted, a 5 s time limit let a much longer run finish ``done``, ``ready_path`` made
the worker fetch another local service and quote its answer, a 2560x120000 full page was
rendered whole, and a decompression bomb surfaced as "internal error".
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from diffie.app_context import AppContext
from diffie.artifacts import ArtifactDir
from diffie.browser import BrowserRunner
from diffie.capture import Capture, Screenshot
from diffie.compare.findings import compare_runs
from diffie.composition import build_context
from diffie.config import Settings
from diffie.control import Quiet
from diffie.errors import DeployError, ImageError
from diffie.fakes import FakeSandbox, fake_deps
from diffie.git_source import LocalSource
from diffie.pipeline import run_change
from diffie.run_store import ChangeInput
from diffie.sandbox.deploy import deploy
from diffie.spec import SandboxSpec, parse_spec
from tests.conftest import PAGE, LiveServer, Site, finished, make_settings, wait_until
from tests.unit.test_compare_limits import png_header_only, small_png
from tests.unit.test_spec_limits import alias_bomb
from workers.embedded import EmbeddedWorker
from workers.tasks import describe

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CANARY = f"canary-{secrets.token_hex(8)}"


@pytest.fixture
def actx(tmp_path: Path) -> Iterator[AppContext]:
    ctx = build_context(make_settings(tmp_path / "data", task_time_limit_s=5,
                                      parallel_sides=False))
    yield ctx
    ctx.close()


@pytest.fixture
def api(actx: AppContext, live_api: Callable[[AppContext], LiveServer]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_api(actx).url, timeout=60) as client:
        yield client


def submit(api: httpx.Client, spec: str, base: str = "http://127.0.0.1:9") -> httpx.Response:
    return api.post("/v1/runs", json={"base_url": base, "head_url": base, "spec": spec})


# --- YAML alias bomb ---------------------------------------------------------------------------

def test_alias_bomb_is_a_fast_422_naming_the_line(api: httpx.Client) -> None:
    bomb = alias_bomb(9)
    assert len(bomb) < 600
    t0 = time.monotonic()
    resp = submit(api, bomb)
    elapsed = time.monotonic() - t0
    assert resp.status_code == 422, resp.text
    assert elapsed < 2.0, f"the bomb held the request for {elapsed:.1f} s"
    detail = resp.json()["detail"][0]
    assert detail["ctx"]["file"] == ".diffie.yml" and detail["ctx"]["line"] == 1
    assert "anchors" in detail["msg"]
    assert api.get("/v1/runs").json() == []            # nothing was recorded


def test_alias_bomb_in_a_stored_spec_ends_the_run_error_at_once(tmp_path: Path) -> None:
    """The worker parses specs it did not get through the API (repo mode, forks) the same way."""
    settings = make_settings(tmp_path / "data")
    change = ChangeInput(run_id=secrets.token_hex(8), mode="url", base_url="http://127.0.0.1:9",
                         head_url="http://127.0.0.1:9", spec_text=alias_bomb(9))
    t0 = time.monotonic()
    verdict = run_change(change, fake_deps(settings), Quiet())
    assert time.monotonic() - t0 < 2.0
    assert verdict.status == "error" and verdict.reason is not None
    assert verdict.reason.startswith(".diffie.yml:1:") and "anchors" in verdict.reason


# --- 5,000 flows of 600 s steps -----------------------------------------------------------------

def test_five_thousand_flows_of_long_steps_are_refused(api: httpx.Client) -> None:
    spec = "timeout_ms: 600000\nflows:\n" + "".join(
        f"  - {{name: f{i}, steps: [{{goto: /}}]}}\n" for i in range(5000))
    t0 = time.monotonic()
    resp = submit(api, spec)
    assert time.monotonic() - t0 < 5.0
    assert resp.status_code == 422, resp.text[:500]
    detail = resp.json()["detail"][0]
    assert detail["ctx"]["field"] == "flows" and detail["ctx"]["line"] == 2
    assert "5000 flows, more than the limit of 50 (DIFFIE_MAX_FLOWS)" in detail["msg"]
    one = "timeout_ms: 600000\nflows:\n  - {name: f, steps: [{goto: /}]}\n"
    detail = submit(api, one).json()["detail"][0]
    assert "DIFFIE_MAX_STEP_TIMEOUT_MS" in detail["msg"] and detail["ctx"]["field"] == "timeout_ms"


def test_an_oversized_spec_object_is_refused_before_it_is_converted(api: httpx.Client) -> None:
    """The same spec as a JSON object (``spec: {...}`` or ``flows: [...]``): a near-1 MB body of
    20,000 flows took seconds to turn into YAML before it was checked."""
    flows = [{"name": f"f{i}", "steps": [{"goto": "/"}]} for i in range(20_000)]
    for body in ({"spec": {"timeout_ms": 600000, "flows": flows}}, {"flows": flows}):
        t0 = time.monotonic()
        resp = api.post("/v1/runs", json={"base_url": "http://127.0.0.1:9",
                                          "head_url": "http://127.0.0.1:9", **body})
        assert time.monotonic() - t0 < 2.0
        assert resp.status_code == 422, resp.text[:300]
        detail = resp.json()["detail"][0]
        assert "20000 flows, more than the limit of 50 (DIFFIE_MAX_FLOWS)" in detail["msg"]
        assert detail["ctx"]["field"] == "flows"


# --- the time limit in the embedded worker ------------------------------------------------------

def test_the_embedded_worker_enforces_the_task_time_limit(actx: AppContext,
                                                          api: httpx.Client) -> None:
    """DIFFIE_TASK_TIME_LIMIT_S=5 and a run that would take about 40 s: it ends ``error`` at
    the limit, naming it, and never becomes ``done``."""
    wait = "      - wait_for: {selector: '#never', timeout_ms: 3000}\n"
    spec = "flows:\n" + "".join(f"  - name: f{i}\n    viewports: [desktop]\n    steps:\n"
                                f"      - goto: /\n{wait}" for i in range(7))
    with Site({"/": PAGE % ""}) as site, EmbeddedWorker(actx.celery):
        resp = submit(api, spec, site.url)
        assert resp.status_code == 202, resp.text
        run_id = resp.json()["id"]
        running = wait_until(lambda: api.get(f"/v1/runs/{run_id}").json()["status"] != "queued",
                             timeout=60, what="the worker to claim the run")
        assert running
        t0 = time.monotonic()
        run = finished(api, run_id, timeout=60)
        ended_after = time.monotonic() - t0
    assert run["status"] == "error", run
    assert "time limit of 5 s (DIFFIE_TASK_TIME_LIMIT_S)" in run["reason"]
    assert run["verdict"]["status"] == "error"
    assert ended_after < 12, f"the run ended {ended_after:.1f} s after it started"
    time.sleep(0.5)
    after = api.get(f"/v1/runs/{run_id}").json()
    assert after["status"] == "error" and after["reason"] == run["reason"]
    assert {"verdict.json", "index.html"} <= {a["name"] for a in after["artifacts"]}


# --- ready_path ---------------------------------------------------------------------------------

class Server:
    """A local HTTP server answering every GET with ``status`` and ``body``; counts its hits."""

    def __init__(self, status: int, body: str) -> None:
        server = self
        self.hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits.append(self.path)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def internal() -> Iterator[Server]:
    s = Server(500, f"INTERNAL ADMIN PANEL db_password={CANARY}")
    yield s
    s.close()


@pytest.fixture
def app() -> Iterator[Server]:
    s = Server(503, "starting")
    yield s
    s.close()


class Machine:
    name = "fake"

    def __init__(self, app_url: str) -> None:
        self.app_url = app_url

    def exec(self, argv: Any, *, timeout: float = 120.0, env: Any = None,
             cwd: str | None = None) -> Any:
        raise AssertionError("no deploy commands in this test")

    def put_tree(self, src: Path, dest: str) -> None:
        pass

    def url(self, guest_port: int) -> str:
        return self.app_url

    def set_clock(self, instant: datetime) -> None:
        pass

    def checkpoint(self) -> None:
        raise AssertionError("the deploy never checkpoints")

    def reset(self) -> None:
        raise AssertionError("the deploy never resets")


@pytest.mark.parametrize("path", ["@127.0.0.1:{port}/x", "//127.0.0.1:{port}/x",
                                  "http://127.0.0.1:{port}/x", "/\\@127.0.0.1:{port}/x"])
def test_ready_path_injection_is_refused_at_submission(api: httpx.Client, internal: Server,
                                                       path: str) -> None:
    spec = ("flows:\n  - {name: f, steps: [{goto: /}]}\nsandbox:\n  image: shop\n"
            f"  ready_path: {path.format(port=internal.port)!r}\n")
    resp = submit(api, spec)
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"][0]
    assert detail["ctx"]["field"] == "sandbox.ready_path" and detail["ctx"]["line"] == 5
    with pytest.raises(Exception, match="ready_path"):
        parse_spec(spec)
    assert internal.hits == []


def test_the_worker_never_fetches_another_host_for_readiness(app: Server, internal: Server,
                                                            tmp_path: Path) -> None:
    """Even a spec that skipped validation: the URL is built by a parser from the app's origin."""
    spec = SandboxSpec.model_construct(**{
        **SandboxSpec(image="shop", ready_timeout_s=1).model_dump(),
        "ready_path": f"@127.0.0.1:{internal.port}/x"})
    with pytest.raises(DeployError) as info:
        deploy(Machine(app.url), tmp_path, spec)
    assert internal.hits == []
    assert CANARY not in str(info.value) + info.value.output_tail + info.value.command
    # and the app's own answer is quoted bounded and escaped
    ok = SandboxSpec(image="shop", ready_timeout_s=0.5, ready_path="/health")
    with pytest.raises(DeployError) as info:
        deploy(Machine(app.url), tmp_path, ok)
    assert app.hits and app.hits[0] == "/health"
    assert info.value.output_tail == "HTTP 503: 'starting'"


# --- screenshot pixel area ----------------------------------------------------------------------

TALL = """<!doctype html><html><body style="margin:0">
<div style="width:2560px;height:120000px;background:linear-gradient(#c00,#00c)"></div>
</body></html>"""


def test_a_huge_full_page_screenshot_is_clipped_to_the_area_limit(tmp_path: Path) -> None:
    spec = parse_spec("viewports:\n  wide: {width: 2560, height: 1000}\nflows:\n  - name: tall\n"
                      "    steps:\n      - goto: /\n"
                      "      - screenshot: {name: tall, full_page: true, timeout_ms: 60000}\n")
    settings = Settings(chromium_path=CHROMIUM)
    out = ArtifactDir(tmp_path / "out")
    with Site({"/": TALL}) as site, BrowserRunner(settings) as runner:
        t0 = time.monotonic()
        capture = runner.run_flow(spec, spec.flows[0], "wide", spec.viewports["wide"], site.url,
                                  "base", out, clock=datetime(2024, 1, 1, tzinfo=UTC))
        elapsed = time.monotonic() - t0
    assert capture.completed, capture.steps
    shot = capture.screenshots[0]
    assert shot.width * shot.height <= settings.max_screenshot_pixels
    assert (shot.width, shot.height) == (2560, 3125)
    assert shot.clipped_from == [2560, 120_000]
    assert elapsed < 30, f"the screenshot step took {elapsed:.1f} s"


def test_diffing_a_huge_pair_is_a_clear_error_never_a_decode(tmp_path: Path) -> None:
    out = ArtifactDir(tmp_path).ensure()
    small_png(out.path("base.png"))
    png_header_only(out.path("head.png"), 30_000, 30_000)    # 900 Mpx: Pillow's bomb check
    png_header_only(out.path("big.png"), 4_000, 5_000)       # 20 Mpx: over the area limit

    def caps(head_name: str) -> tuple[list[Capture], list[Capture]]:
        def cap(side: str, name: str) -> Capture:
            c = Capture(flow="f", viewport="desktop", side=side)  # type: ignore[arg-type]
            c.screenshots.append(Screenshot(name="s", step=0, artifact=name, width=1, height=1))
            return c
        return [cap("base", "base.png")], [cap("head", head_name)]

    for name, match in (("head.png", "too large to decode safely"),
                        ("big.png", "more than the limit of 8,000,000")):
        base, head = caps(name)
        with pytest.raises(ImageError, match=match) as info:
            compare_runs(base, head, out)
        reason = describe(info.value)
        assert not reason.startswith("internal error") and "DIFFIE_MAX_SCREENSHOT_PIXELS" in reason


# --- repository size copied into the guest -----------------------------------------------------

def test_a_head_too_large_to_copy_into_the_vm_is_a_deploy_error(tmp_path: Path) -> None:
    from tests.conftest import make_repo
    from tests.integration.test_queue_repo_mode import BUTTON, tree

    big = tree(BUTTON) | {f"blob/{i}.bin": "x" * 100 for i in range(40)}
    repo, (base, head) = make_repo(tmp_path, [tree(BUTTON), big])
    settings = make_settings(tmp_path / "data", max_repo_files=20)
    sandbox = FakeSandbox()
    change = ChangeInput(run_id=secrets.token_hex(8), mode="repo", repo=str(repo),
                         base_rev=base, head_rev=head)
    verdict = run_change(change, fake_deps(settings, sandbox=sandbox,
                                           sources={"repo": LocalSource(tmp_path / "git")}),
                         Quiet())
    assert verdict.status == "fail"
    (finding,) = verdict.findings
    assert finding.kind == "deploy_error"
    assert "more than 20 files" in finding.message and "DIFFIE_MAX_REPO_FILES" in finding.message
    assert [e[0] for e in sandbox.log].count("put_tree") == 1     # base only: head not copied
