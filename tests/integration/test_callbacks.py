"""Callbacks for real: a run submitted over HTTP with a ``callback_url`` ends, and a worker
POSTs its result to a real receiver — signed (HMAC over timestamp and body), retried while the
receiver answers 503, delivered once; a callback to an origin the operator did not allow is
refused at submission (422 naming the field)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from diffie import callbacks, counters
from diffie.app_context import AppContext
from diffie.composition import build_context
from tests.conftest import PAGE, LiveServer, Site, finished, make_settings, wait_until
from workers.embedded import EmbeddedWorkers

SECRET = "s" * 40
SPEC = "flows:\n  - name: home\n    viewports: [desktop]\n    steps:\n" \
       "      - goto: /\n      - screenshot: home\n"


class Receiver:
    """Answers 503 (Retry-After: 1) ``failures`` times, then 200; keeps what it was sent."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                code = 503 if receiver.failures > 0 else 200
                receiver.failures -= 1
                receiver.seen.append(({k.lower(): v for k, v in self.headers.items()}, body,
                                      code))
                self.send_response(code)
                if code == 503:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/diffie"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cctx(tmp_path: Path) -> Iterator[AppContext]:
    ctx = build_context(make_settings(tmp_path / "data", callback_origins=["http://127.0.0.1:*"],
                                      callback_secret=SECRET))
    yield ctx
    ctx.close()


def test_a_finished_run_calls_back_signed_and_retried(
        cctx: AppContext, live_api: Callable[[AppContext], LiveServer]) -> None:
    assert "callback" in cctx.publishers
    receiver = Receiver(failures=2)
    server = live_api(cctx)
    workers = EmbeddedWorkers(cctx.celery, publish=True).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api, \
                Site({"/": PAGE % ""}) as site:
            refused = api.post("/v1/runs", json={"base_url": site.url, "head_url": site.url,
                                                 "spec": SPEC,
                                                 "callback_url": "http://10.0.0.1/x"})
            assert refused.status_code == 422
            error = refused.json()["detail"][0]
            assert error["loc"] == ["body", "callback_url"]
            assert "DIFFIE_CALLBACK_ORIGINS" in error["msg"]
            resp = api.post("/v1/runs", json={"base_url": site.url, "head_url": site.url,
                                              "spec": SPEC, "callback_url": receiver.url})
            assert resp.status_code == 202, resp.text
            run_id = resp.json()["id"]
            run = finished(api, run_id)
            wait_until(lambda: any(code == 200 for _, _, code in receiver.seen), timeout=60,
                       what="the callback to be delivered")
    finally:
        workers.stop(timeout=30)
        receiver.close()
    assert run["verdict"]["status"] == "pass", run["reason"]
    assert [code for _, _, code in receiver.seen] == [503, 503, 200]   # retried, then once
    headers, body, _ = receiver.seen[-1]
    assert callbacks.verify(SECRET, headers["x-diffie-timestamp"], body,
                            headers["x-diffie-signature"])
    assert not callbacks.verify("x" * 40, headers["x-diffie-timestamp"], body,
                                headers["x-diffie-signature"])
    assert headers["x-diffie-event"] == "run.finished"
    assert headers["x-diffie-delivery"] == run_id
    sent = json.loads(body)
    assert (sent["run_id"], sent["status"], sent["verdict"]) == (run_id, "done", "pass")
    assert sent["compact"]["status"] == "pass"
    assert sent["report_url"].startswith(f"http://127.0.0.1:8000/v1/runs/{run_id}/signed/")
    stale = str(int(headers["x-diffie-timestamp"]) - 600)         # a replayed old delivery
    assert not callbacks.verify(SECRET, stale, body, callbacks.sign(SECRET, stale, body))
    assert counters.read(cctx.db, "callbacks") == {"delivered": 1}
    assert counters.read(cctx.db, "publish_retries") == {"callback": 2}
    assert cctx.publishers["callback"].pending(0) == []          # nothing owed any more
