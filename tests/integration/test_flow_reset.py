"""Each flow × viewport starts from the deployed state, and a failure carries the app's log:
the pipeline with real git, the real deploy code and real Chromium, and a stand-in VM whose app
keeps state in memory (a counter, a journal) that its checkpoint and reset copy and restore.
The real VM path is tests/system/test_vm_flow_reset.py.
"""

from __future__ import annotations

import copy
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from diffie.composition import job_deps
from diffie.control import Quiet
from diffie.pipeline import run_change
from diffie.run_store import ChangeInput
from diffie.sandbox.base import ExecResult
from tests.conftest import make_repo, make_settings

pytestmark = pytest.mark.integration

SPEC = """\
viewports:
  desktop: {width: 800, height: 600}
  mobile: {width: 390, height: 700, mobile: true}
flows:
  - name: bump                  # writes: each visit adds one
    steps:
      - goto: /bump
      - expect_text: {selector: "#count", text: "count=1;"}
      - screenshot: bumped
  - name: peek                  # reads what the flow before it left
    reset: false
    viewports: [desktop]
    steps:
      - goto: /count
      - expect_text: {selector: "#count", text: "count=1;"}
  - name: order
    viewports: [desktop]
    steps:
      - goto: /order
      - expect_text: {selector: h1, text: "Order placed"}
sandbox:
  image: shop
  deploy: ["systemctl restart shop"]
  port: 8000
"""
SECRET = "hunter2-very-secret"
CRASH = [f"shop[81]: connecting to postgres://shop:{SECRET}@db/shop",
         "shop[81]: Traceback (most recent call last):",
         "shop[81]: KeyError: 'sku' <script>alert(1)</script>",
         f"shop[81]: env SHOP_DB_PASSWORD={SECRET} Authorization: Bearer abc.def.ghi"]


class StandInVM:
    """A "VM" whose app is an HTTP server on the host. Its state (a counter and the journal)
    lives here, so checkpoint() and reset() keep and restore it like a VM snapshot would."""

    def __init__(self, log: list[tuple[str, ...]]) -> None:
        self.name = "stand-in"
        self.log = log
        self.state: dict[str, Any] = {"count": 0, "journal": ["systemd[1]: Started shop.service."]}
        self.saved: dict[str, Any] | None = None
        self.order_status = 200
        vm = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                status, body = 200, ""
                if path in ("/bump", "/count", "/order"):
                    vm.log.append(("GET", path))
                if path == "/bump":
                    vm.state["count"] += 1
                if path in ("/bump", "/count"):
                    body = f'<p id="count">count={vm.state["count"]};</p>'
                elif path == "/order":
                    status = vm.order_status
                    if status >= 500:
                        vm.state["journal"].extend(CRASH)
                        body = "<h1>Internal error</h1>"
                    else:
                        body = "<h1>Order placed</h1>"
                elif path != "/health":
                    status = 404
                data = f"<!doctype html><html><body>{body}</body></html>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- the Machine protocol ---------------------------------------------------------------

    def exec(self, argv: Sequence[str], *, timeout: float = 120.0,
             env: dict[str, str] | None = None, cwd: str | None = None) -> ExecResult:
        journal: list[str] = self.state["journal"]
        out = ""
        if argv[0] == "journalctl" and "--show-cursor" in argv:
            out = f"{journal[-1]}\n-- cursor: s={len(journal)}\n"
        elif argv[0] == "journalctl":
            after = next((a.split("=s=", 1)[1] for a in argv if a.startswith("--after-cursor=")),
                         "0")
            assert "--unit=shop.service" in argv, argv
            out = "".join(f"2031-05-06T07:08:09+0000 {line}\n" for line in journal[int(after):])
        elif argv[0] == "systemctl" and argv[1] == "show":
            out = f"SHOP_DB_PASSWORD={SECRET} SHOP_PORT=8000\n"
        return ExecResult(tuple(argv), 0, out, "", 0.01)

    def put_tree(self, src: Path, dest: str) -> None:
        self.order_status = int((src / "order.status").read_text())

    def url(self, guest_port: int) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def set_clock(self, instant: datetime) -> None:
        self.log.append(("set_clock",))

    def checkpoint(self) -> None:
        self.log.append(("checkpoint",))
        self.saved = copy.deepcopy(self.state)

    def reset(self) -> None:
        assert self.saved is not None, "reset before checkpoint"
        self.log.append(("reset",))
        self.state = copy.deepcopy(self.saved)


class StandInSandbox:
    """Leases StandInVMs; ``logs``: each VM's own events, in the order the VMs were leased
    (base first: head leases only once base holds its VM; both may then run at once)."""

    def __init__(self) -> None:
        self.logs: list[list[tuple[str, ...]]] = []

    @contextmanager
    def lease(self, image: str, *, run_id: str = "",
              wait_s: float | None = None,
              on_slot: Callable[[], None] | None = None) -> Iterator[StandInVM]:
        log: list[tuple[str, ...]] = [("lease",)]
        self.logs.append(log)
        if on_slot is not None:
            on_slot()
        vm = StandInVM(log)
        try:
            yield vm
        finally:
            vm.close()
            log.append(("destroy",))


def test_each_flow_starts_from_the_deployed_state_and_failures_carry_the_app_log(
        tmp_path: Path) -> None:
    revisions = [{".diffie.yml": SPEC, "order.status": status} for status in ("200", "500")]
    repo, (base, head) = make_repo(tmp_path, revisions)
    settings = make_settings(tmp_path / "data", noise_floor=True)
    sandbox = StandInSandbox()
    change = ChangeInput(run_id=secrets.token_hex(8), mode="repo", repo=str(repo),
                         base_rev=base, head_rev=head)
    verdict = run_change(change, job_deps(settings, None, sandbox=sandbox), Quiet())

    # The counter flow passes at both viewports on both sides:
    # without the reset its mobile run would see count=2 on both sides (a pre-existing failure).
    assert verdict.status == "fail", verdict.summary
    assert {f.flow for f in verdict.findings} == {"order"}, verdict.findings
    assert verdict.not_verified == [], verdict.not_verified
    assert {(c.flow, c.viewport) for c in verdict.coverage if not c.verified} == \
        {("order", "desktop")}, verdict.coverage
    one_side = [("lease",), ("set_clock",), ("checkpoint",), ("set_clock",),
                ("GET", "/bump"),                                   # desktop: right after the deploy
                ("reset",), ("set_clock",), ("GET", "/bump"),       # mobile
                ("GET", "/count"),                                  # peek: reset: false
                ("reset",), ("set_clock",), ("GET", "/order")]
    # head's second render: only the flow that failed (its screenshots match base elsewhere)
    head2 = [("reset",), ("set_clock",), ("GET", "/order")]
    assert sandbox.logs == [[*one_side, ("destroy",)], [*one_side, *head2, ("destroy",)]]

    # Head's failing order flow carries the app's journal since the checkpoint, masked.
    order = [f for f in verdict.findings if f.flow == "order"]
    assert {f.kind for f in order} == {"request_failed", "assertion_failed"}
    for finding in order:
        log = finding.details["server_log"]
        assert "KeyError: 'sku'" in log and "Started shop.service" not in log
        assert SECRET not in log and "abc.def.ghi" not in log
        assert "postgres://shop:***@db/shop" in log and "SHOP_DB_PASSWORD=***" in log
    report = (settings.artifacts_dir / change.run_id / "index.html").read_text()
    assert "KeyError: &#39;sku&#39; &lt;script&gt;alert(1)&lt;/script&gt;" in report
    assert "<script>alert(1)" not in report and SECRET not in report
