"""Deploy per SandboxSpec against a fake machine and a real local HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from diffie.errors import DeployError
from diffie.sandbox.base import ExecResult
from diffie.sandbox.deploy import deploy, deploy_detailed, wait_ready
from diffie.spec import SandboxSpec


class App:
    """A tiny HTTP app: /health answers 503 until ``ready`` is set."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code = 200 if app.ready.is_set() else 503
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code == 200 else b"starting")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def app() -> Iterator[App]:
    a = App()
    yield a
    a.server.shutdown()
    a.server.server_close()


class FakeMachine:
    name = "fake"

    def __init__(self, app: App, codes: dict[str, int]) -> None:
        self.app, self.codes = app, codes
        self.trees: list[tuple[Path, str]] = []
        self.commands: list[tuple[str, str | None]] = []

    def exec(self, argv: Sequence[str], *, timeout: float = 120.0,
             env: dict[str, str] | None = None, cwd: str | None = None) -> ExecResult:
        command = argv[-1]
        self.commands.append((command, cwd))
        code = self.codes.get(command, 0)
        if command == "systemctl restart app":
            self.app.ready.set()
        out = "line\n" * 2000 + "Traceback: SyntaxError at app.py:3\n" if code else "fine\n"
        return ExecResult(tuple(argv), code, out, "", 0.01)

    def put_tree(self, src: Path, dest: str) -> None:
        self.trees.append((src, dest))

    def url(self, guest_port: int) -> str:
        assert guest_port == 8000
        return self.app.url

    def set_clock(self, instant: datetime) -> None:
        pass

    def checkpoint(self) -> None:
        raise AssertionError("the deploy never checkpoints")

    def reset(self) -> None:
        raise AssertionError("the deploy never resets")


SPEC = SandboxSpec(image="shop", source_dir="/srv/app", port=8000, ready_path="/health",
                   deploy=["python3 -m compileall -q .", "systemctl restart app"],
                   ready_timeout_s=10)


def test_deploy_copies_runs_and_waits(app: App, tmp_path: Path) -> None:
    machine = FakeMachine(app, {})
    result = deploy_detailed(machine, tmp_path, SPEC)
    assert machine.trees == [(tmp_path, "/srv/app")]
    assert machine.commands == [("python3 -m compileall -q .", "/srv/app"),
                                ("systemctl restart app", "/srv/app")]
    assert result.base_url == app.url and len(result.commands) == 2
    urls = deploy(FakeMachine(app, {}), tmp_path, SPEC)
    assert dict(urls) == {"app": app.url} and urls.base_url == app.url


def test_a_failing_command_raises_with_command_code_and_tail(app: App, tmp_path: Path) -> None:
    machine = FakeMachine(app, {"python3 -m compileall -q .": 1})
    with pytest.raises(DeployError) as err:
        deploy(machine, tmp_path, SPEC)
    exc = err.value
    assert exc.command == "python3 -m compileall -q ." and exc.exit_code == 1
    assert exc.output_tail.endswith("SyntaxError at app.py:3\n") and len(exc.output_tail) <= 4000
    assert machine.commands == [("python3 -m compileall -q .", "/srv/app")]   # stopped there


def test_an_app_that_never_gets_ready(app: App, tmp_path: Path) -> None:
    spec = SPEC.model_copy(update={"deploy": ["true"], "ready_timeout_s": 1})
    with pytest.raises(DeployError) as err:
        deploy(FakeMachine(app, {}), tmp_path, spec)
    assert "did not become ready" in str(err.value) and "HTTP 503" in err.value.output_tail


def test_wait_ready_returns_once_healthy(app: App) -> None:
    threading.Timer(0.5, app.ready.set).start()
    assert 0.3 < wait_ready(app.url + "/health", 10, poll_s=0.05) < 5
