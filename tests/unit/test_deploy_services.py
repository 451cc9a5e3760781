"""A deploy of an app with several services: every service's ready check must answer (each
with its own timeout), the deploy commands get each service's URL, a port the VM does not
forward is refused with what to do, and the checkpoint's revert checks every service again.
Then a whole run with the shipped fakes: flows on either service, both sides."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from diffie.control import Lines
from diffie.errors import DeployError, SandboxError
from diffie.fakes import FakeMachine as FakesMachine
from diffie.fakes import FakeSandbox, FilesSource, fake_deps
from diffie.pipeline import run_change
from diffie.run_store import ChangeInput
from diffie.sandbox.base import ExecResult
from diffie.sandbox.deploy import deploy_detailed, ready_urls
from diffie.server_state import ServerState
from diffie.services import ServiceUrls
from diffie.spec import SandboxSpec
from tests.conftest import make_settings
from tests.unit.test_deploy_semantics import ShellMachine, _deploy
from tests.unit.test_sandbox_deploy import App
from tests.unit.test_sandbox_deploy import FakeMachine as AppMachine

SPEC = SandboxSpec.model_validate({
    "image": "tasks", "source_dir": "/srv/app", "ready_timeout_s": 10,
    "deploy": ["systemctl restart web api"],
    "services": [{"name": "web", "port": 3000, "ready_path": "/"},
                 {"name": "api", "port": 8000, "ready_timeout_s": 1}]})


@pytest.fixture
def apps() -> Iterator[dict[int, App]]:
    made = {3000: App(), 8000: App()}
    yield made
    for app in made.values():
        app.server.shutdown()
        app.server.server_close()


class ServicesMachine(AppMachine):
    """test_sandbox_deploy's fake machine with one app per guest port; ``systemctl restart``
    makes the web service ready at once and the API ``api_delay_s`` later (None: never)."""

    def __init__(self, apps: dict[int, App], api_delay_s: float | None = 0.0) -> None:
        super().__init__(apps[3000], {})
        self.apps, self.api_delay_s = apps, api_delay_s
        self.envs: list[dict[str, str]] = []

    def exec(self, argv: Sequence[str], *, timeout: float = 120.0,
             env: dict[str, str] | None = None, cwd: str | None = None) -> ExecResult:
        self.envs.append(dict(env or {}))
        if argv[-1].startswith("systemctl restart"):
            self.apps[3000].ready.set()
            if self.api_delay_s is not None:
                threading.Timer(self.api_delay_s, self.apps[8000].ready.set).start()
        return ExecResult(tuple(argv), 0, "", "", 0.01)

    def url(self, guest_port: int) -> str:
        return self.apps[guest_port].url


def test_the_deploy_waits_for_every_service(apps: dict[int, App], tmp_path: Path) -> None:
    machine = ServicesMachine(apps, api_delay_s=0.5)
    lines: list[str] = []
    result = deploy_detailed(machine, tmp_path, SPEC, lines.append)
    assert dict(result.service_urls) == {"web": apps[3000].url, "api": apps[8000].url}
    assert result.base_url == apps[3000].url                      # the default service's
    assert apps[8000].ready.is_set() and result.ready_s >= 0.4
    ready = [line for line in lines if " ready at " in line]
    assert ready[0].startswith(f"web ready at {apps[3000].url}/ after")
    assert ready[1].startswith(f"api ready at {apps[8000].url}/health after")
    # every command got each service's URL, as the browser will use it
    assert machine.envs == [{"DIFFIE_SERVICE_URL_WEB": apps[3000].url,
                             "DIFFIE_SERVICE_URL_API": apps[8000].url}]


def test_a_service_that_never_gets_ready_is_named(apps: dict[int, App], tmp_path: Path) -> None:
    with pytest.raises(DeployError) as info:
        deploy_detailed(ServicesMachine(apps, api_delay_s=None), tmp_path, SPEC)
    url = f"{apps[8000].url}/health"
    assert str(info.value).startswith(f"service 'api' (guest port 8000, ready_path /health) "
                                      f"did not become ready at {url} within 1 s (HTTP 503: "
                                      "'starting'); the journal of web.service, api.service")
    assert info.value.command == f"GET {url}" and "HTTP 503" in info.value.output_tail


def test_the_deploy_commands_see_every_services_url(tmp_path: Path) -> None:
    class PortsMachine(ShellMachine):
        def url(self, guest_port: int) -> str:
            return f"http://127.0.0.1:{40000 + guest_port}"

    (tmp_path / "guest" / "srv").mkdir(parents=True)
    tree = tmp_path / "rev"
    tree.mkdir()
    spec = SPEC.model_copy(update={
        "build": ['echo "$DIFFIE_SERVICE_URL_WEB $DIFFIE_SERVICE_URL_API" > urls.txt'],
        "deploy": ['echo "$DIFFIE_SERVICE_URL_API" > api.txt'], "ready_timeout_s": 0.3})
    _deploy(PortsMachine(tmp_path / "guest"), tree, spec)
    app = tmp_path / "guest" / "srv" / "app"
    assert (app / "urls.txt").read_text() == "http://127.0.0.1:43000 http://127.0.0.1:48000\n"
    assert (app / "api.txt").read_text() == "http://127.0.0.1:48000\n"


def test_a_port_the_vm_does_not_forward_says_to_add_it(tmp_path: Path) -> None:
    log: list[tuple[object, ...]] = []
    machine = FakesMachine("fake", tmp_path / "vm", log, ports=[3000])
    (tmp_path / "rev").mkdir()
    with pytest.raises(DeployError) as info:
        deploy_detailed(machine, tmp_path / "rev", SPEC)
    assert str(info.value) == (
        "service 'api' (guest port 8000, ready_path /health): the VM does not forward guest "
        "port 8000 (no host port left to forward guest port 8000); add 8000 to the ports: of "
        "the image's recipe (tasks)")
    assert info.value.command == "forward guest port 8000"
    assert log == []                                 # refused before anything was copied or run
    machine.close()


class RevertingMachine(AppMachine):
    def __init__(self, apps: dict[int, App]) -> None:
        super().__init__(apps[3000], {})
        self.apps = apps

    def checkpoint(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def exec(self, argv: Sequence[str], *, timeout: float = 120.0,
             env: dict[str, str] | None = None, cwd: str | None = None) -> ExecResult:
        return ExecResult(tuple(argv), 1, "", "", 0.0)      # no journal in this guest


def test_a_revert_checks_every_service(apps: dict[int, App]) -> None:
    apps[3000].ready.set()
    urls = {"web": apps[3000].url, "api": apps[8000].url}
    readies = ready_urls(ServiceUrls(urls), SPEC)
    assert readies == [f"{apps[3000].url}/", f"{apps[8000].url}/health"]
    state = ServerState(RevertingMachine(apps), datetime(2024, 1, 2, tzinfo=UTC), units=[],
                        say=lambda _line: None, ready_after_reset_s=1.0)
    state.checkpoint(list(urls.values()), readies)
    threading.Timer(0.3, apps[8000].ready.set).start()
    assert state.reset() >= 0.2                      # waited for the API too
    apps[8000].ready.clear()
    with pytest.raises(SandboxError, match=f"did not become ready at {apps[8000].url}/health"):
        state.reset()


def test_serverstate_needs_the_ready_urls(apps: dict[int, App]) -> None:
    state = ServerState(RevertingMachine(apps), datetime.now(UTC),
                        units=[], say=lambda _line: None)
    with pytest.raises(SandboxError):
        state.checkpoint([], [])
    with pytest.raises(SandboxError, match="reset before the checkpoint"):
        state.reset()


RUN_SPEC = """\
viewports:
  desktop: {width: 800, height: 600}
flows:
  - name: home
    steps:
      - goto: /
      - expect_text: {selector: h1, text: Tasks}
      - goto: {url: /api/tasks.json, service: api}
      - expect_text: {selector: body, text: write docs}
      - screenshot: home
  - name: api
    service: api
    steps:
      - goto: /api/tasks.json
      - expect_text: {selector: body, text: write docs}
sandbox:
  image: tasks
  deploy: ["systemctl restart tasks"]
  services:
    - {name: web, port: 3000}
    - {name: api, port: 8000}
"""
TREE = {".diffie.yml": RUN_SPEC, "index.html": "<h1>Tasks</h1>", "health": "ok",
        "api/tasks.json": '[{"title": "write docs"}]'}


def _run(tmp_path: Path, sandbox: FakeSandbox, head: dict[str, str]) -> tuple[str, str, str]:
    deps = fake_deps(make_settings(tmp_path / "data", noise_floor=False), sandbox=sandbox,
                     sources={"repo": FilesSource(TREE, head)})
    lines: list[str] = []
    change = ChangeInput(run_id=secrets.token_hex(8), mode="repo", repo="fake", base_rev="b",
                         head_rev="h")
    verdict = run_change(change, deps, Lines(lines.append))
    return verdict.status, verdict.summary, "\n".join(lines)


def test_a_run_browses_every_service(tmp_path: Path) -> None:
    status, summary, log = _run(tmp_path, FakeSandbox(ports=[3000, 8000]), TREE)
    assert status == "pass", summary
    assert "base: deployed, app at web http://127.0.0.1:" in log
    status, summary, _ = _run(tmp_path, FakeSandbox(ports=[3000, 8000]),
                              {**TREE, "api/tasks.json": "[]"})
    assert status == "fail" and "assertion" in summary.lower(), summary


def test_a_run_whose_image_does_not_forward_a_service_port(tmp_path: Path) -> None:
    status, summary, log = _run(tmp_path, FakeSandbox(ports=[3000]), TREE)
    assert status == "error"
    assert "add 8000 to the ports: of the image's recipe" in log, log
