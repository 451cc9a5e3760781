"""Fakes of the job's deps (:mod:`diffie.deps`), for tests of the job and of what is built on it.

They are small, honest stand-ins, not mocks: a real HTTP server and real files on this host.

- :class:`FakeSandbox` / :class:`FakeMachine`: a "VM" is a temporary folder on the host; the tree
  put into it is served over HTTP by :class:`StaticSite` on a loopback port, one per guest port
  asked for (``FakeSandbox(ports=[...])``: only those are forwarded, as an image's recipe
  says; others fail like a VM with no host port left). Everything done to it (lease, put_tree,
  exec, set_clock, checkpoint, reset, destroy) is appended to ``FakeSandbox.log``.
- :func:`static_deploy`: the :class:`~diffie.deps.Deployer` of a fake machine: copies the tree
  in and serves it on each service's port; a tree that holds a ``DEPLOY_FAILS`` file fails to
  deploy with that file's text as the command output (so a test's change can break its deploy).
- :class:`PageBrowser`: a :class:`~diffie.deps.FlowRunner` without Chromium. ``goto`` fetches
  the page of the step's (or flow's) service with HTTP (a status >= 400 is a failed request;
  ``expect_status`` steps are not needed); ``expect_text`` checks the page's body contains the
  text; ``screenshot`` writes a small PNG whose colour is derived from the body, so identical
  pages give identical pixels and any change to the page changes them. Other actions succeed.

- :class:`FilesSource`: base and head trees given as ``{path: text}`` maps (no git).

:func:`fake_deps` puts them together.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from PIL import Image

from diffie.artifacts import ArtifactDir, slug
from diffie.capture import Capture, RequestIssue, Screenshot, Side, StepResult
from diffie.config import Settings
from diffie.deps import FlowHooks, FlowRunner, JobDeps, SourceProvider
from diffie.errors import DeployError, NoFreeSlot, SandboxError
from diffie.run_store import ChangeInput
from diffie.sandbox.base import ExecResult, Machine
from diffie.sandbox.deploy import service_urls
from diffie.sandbox.recipe import LoadedRecipe
from diffie.services import ServiceUrls
from diffie.spec import Flow, SandboxSpec, Spec, Viewport

DEPLOY_FAILS = "DEPLOY_FAILS"
SHOT_SIZE = 24


class StaticSite:
    """Serves a folder over HTTP on 127.0.0.1 (a free port) until closed; ``root`` may be a
    function naming the folder at each request (a machine's tree, deployed later)."""

    def __init__(self, root: Path | Callable[[], Path]) -> None:
        folder = root if callable(root) else (lambda: root)

        class Quiet(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(folder()), **kwargs)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="fake-site")
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeMachine:
    """A disposable "guest": a host folder, its deployed tree served by a :class:`StaticSite`."""

    def __init__(self, name: str, root: Path, log: list[tuple[Any, ...]],
                 ports: Sequence[int] | None = None) -> None:
        self.name = name
        self.root = root
        self.log = log
        self.ports = None if ports is None else list(ports)   # forwarded guest ports (None: any)
        self.served: Path | None = None
        self.sites: dict[int, StaticSite] = {}                # guest port -> its site
        self.checkpointed = False

    def exec(self, argv: Sequence[str], *, timeout: float = 120.0,
             env: dict[str, str] | None = None, cwd: str | None = None) -> ExecResult:
        self.log.append(("exec", tuple(argv)))
        return ExecResult(tuple(argv), 0, "", "", 0.0)

    def put_tree(self, src: Path, dest: str) -> None:
        target = self.root / dest.lstrip("/")
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(src, target, symlinks=True)
        self.served = target
        self.log.append(("put_tree", src.name, dest))

    def url(self, guest_port: int) -> str:
        if self.ports is not None and guest_port not in self.ports:
            raise SandboxError(f"no host port left to forward guest port {guest_port}")
        if guest_port not in self.sites:        # serves the deployed tree, once there is one
            self.sites[guest_port] = StaticSite(lambda: self.served or self.root)
        return self.sites[guest_port].url

    def set_clock(self, instant: datetime) -> None:
        self.log.append(("set_clock", instant.isoformat()))

    def checkpoint(self) -> None:
        self.checkpointed = True
        self.log.append(("checkpoint",))

    def reset(self) -> None:
        if not self.checkpointed:
            raise SandboxError("reset without a checkpoint")
        self.log.append(("reset",))

    def close(self) -> None:
        for site in self.sites.values():
            site.close()
        self.sites.clear()


class FakeSandbox:
    """Leases :class:`FakeMachine` s; ``log`` records what happened, in order."""

    def __init__(self, ports: Sequence[int] | None = None, slots: int | None = None) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.leases = 0
        self.ports = ports
        self.slots = slots               # None: as many VMs at once as asked for
        self.held = 0
        self.most_held = 0
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)

    @contextmanager
    def lease(self, image: str, *, run_id: str = "", wait_s: float | None = None,
              on_slot: Callable[[], None] | None = None) -> Iterator[FakeMachine]:
        with self._freed:
            if not self._freed.wait_for(lambda: self.slots is None or self.held < self.slots,
                                        timeout=30.0 if wait_s is None else wait_s):
                raise NoFreeSlot(f"no free fake VM slot ({self.slots} slot(s), all leased)")
            self.held += 1
            self.most_held = max(self.most_held, self.held)
            self.leases += 1
            number = self.leases
            self.log.append(("lease", image))
        try:
            if on_slot is not None:
                on_slot()
            with tempfile.TemporaryDirectory(prefix="diffie-fake-vm-") as tmp:
                machine = FakeMachine(f"fake-{number}", Path(tmp), self.log, self.ports)
                try:
                    yield machine
                finally:
                    machine.close()
                    self.log.append(("destroy", image))
        finally:
            with self._freed:
                self.held -= 1
                self._freed.notify_all()


def static_deploy(machine: Machine, source: Path, spec: SandboxSpec,
                  progress: Callable[[str], None] | None = None, *,
                  units: Sequence[str] | None = None) -> ServiceUrls:
    """Deploy ``source`` on a fake machine: copy it in and serve it (see the module doc)."""
    machine.put_tree(source, spec.source_dir)
    fails = source / DEPLOY_FAILS
    if fails.is_file():
        command = spec.deploy[0] if spec.deploy else "deploy"
        raise DeployError(f"deploy command failed with exit code 1: {command}",
                          command=command, exit_code=1,
                          output_tail=fails.read_text(encoding="utf-8", errors="replace"))
    if progress:
        progress(f"deployed {source.name} to {spec.source_dir}")
    return service_urls(machine, spec)


class PageBrowser:
    """A flow runner that reads pages with HTTP instead of Chromium (see the module doc)."""

    def __enter__(self) -> PageBrowser:
        self._client = httpx.Client(timeout=10, follow_redirects=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._client.close()

    def run_pair(self, spec: Spec, flow: Flow, viewport_name: str, viewport: Viewport,
                 base_url: str | ServiceUrls, side: Side, out: ArtifactDir, *, clock: datetime,
                 hooks: FlowHooks | None = None,
                 say: Callable[[str], None] | None = None) -> Capture:
        urls = ServiceUrls.of(base_url, spec.default_service)
        if hooks:
            hooks.before_flow(flow, viewport_name)
        capture = Capture(flow=flow.name, viewport=viewport_name, side=side)
        body = b""
        for index, step in enumerate(flow.steps):
            result = StepResult(index=index, action=step.action, description=step.describe(),
                                ok=True, line=step.line)
            service_url = urls.resolve(step.service or flow.service)
            if step.action == "goto" and service_url is None:
                result.ok, result.error = False, \
                    f"this side has no service {step.service or flow.service!r}"
            elif step.action == "goto" and service_url is not None:
                url = service_url.rstrip("/") + str(step.url)
                response = self._client.get(url)
                body = response.content
                if response.status_code >= 400:
                    capture.requests.append(RequestIssue(
                        method="GET", url=url, status=response.status_code,
                        resource_type="document", step=index))
            elif step.action == "expect_text":
                text = str(step.text or "")
                if text.encode() not in body:
                    result.ok, result.error = False, f"text {text!r} not found"
            elif step.action == "screenshot":
                capture.screenshots.append(self._shot(out, capture, str(step.name), index, body))
            capture.steps.append(result)
            if not result.ok:
                capture.completed = False
                break
        if hooks:
            hooks.after_flow(flow, viewport_name, capture)
        return capture

    @staticmethod
    def _shot(out: ArtifactDir, capture: Capture, name: str, index: int,
              body: bytes) -> Screenshot:
        colour = tuple(hashlib.sha256(body).digest()[:3])
        artifact = f"{slug(capture.side, capture.flow, capture.viewport, name)}.png"
        Image.new("RGB", (SHOT_SIZE, SHOT_SIZE), colour).save(out.path(artifact))
        return Screenshot(name=name, step=index, artifact=artifact, width=SHOT_SIZE,
                          height=SHOT_SIZE)


class FilesSource:
    """A :class:`~diffie.deps.SourceProvider` whose base and head trees are ``{path: text}``
    maps; each side's "sha" is a digest of its files."""

    def __init__(self, base: dict[str, str], head: dict[str, str]) -> None:
        self.base, self.head = base, head

    def materialise(self, change: ChangeInput, base_dest: Path,
                    head_dest: Path) -> tuple[str, str]:
        return self._write(self.base, base_dest), self._write(self.head, head_dest)

    @staticmethod
    def _write(files: dict[str, str], dest: Path) -> str:
        digest = hashlib.sha1(usedforsecurity=False)
        for rel, text in sorted(files.items()):
            path = dest / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            digest.update(f"{rel}\0{text}\0".encode())
        return digest.hexdigest()


class FakeImageBuilder:
    """Builds nothing: records each repository recipe a run asked for and answers its key."""

    def __init__(self) -> None:
        self.built: list[LoadedRecipe] = []

    def __call__(self, loaded: LoadedRecipe, progress: Callable[[str], None]) -> str:
        self.built.append(loaded)
        progress(f"image {loaded.key}: built (fake)")
        return loaded.key


def fake_deps(settings: Settings, *, sandbox: FakeSandbox | None = None,
              sources: dict[str, SourceProvider] | None = None,
              build_image: FakeImageBuilder | None = None) -> JobDeps:
    """Job deps of fakes only: :class:`FakeSandbox`, :func:`static_deploy`, :class:`PageBrowser`;
    ``sources`` (default: none; the composition root's ``LocalSource`` reads real git)."""

    def browser() -> AbstractContextManager[FlowRunner]:
        return PageBrowser()

    return JobDeps(settings=settings, browser=browser, sandbox=sandbox or FakeSandbox(),
                   deploy=static_deploy, sources=dict(sources or {}),
                   build_image=build_image or FakeImageBuilder())
