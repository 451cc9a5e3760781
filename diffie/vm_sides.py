"""Repo mode's two sides, each deployed in a VM of its own and browsed there: at once when a
second VM slot is free, one after the other when not.

    base: lease (waits for a slot) ─> deploy ─> checkpoint ─> browse ─> release
    head: once base holds its slot, lease a second one without waiting ─> deploy ─> checkpoint
          ─> browse ─> (base done) noise floor ─> release;
          no second slot free (or ``parallel_sides`` off): lease after base released its own

Why head never waits for a slot while base holds one, and base never waits for head: a run
that held one slot and waited for another could deadlock with a run doing the same (two
slots, two runs, one each). Here a run waits for a slot only while it holds none, so every run
holding a slot finishes with what it holds.

Each side has its own browser (a Playwright instance belongs to the thread that started it)
and its own :class:`~diffie.server_state.ServerState`. The side's thread starts its browser
while a helper thread deploys (:func:`_browser_while_deploying`): Chromium's start (1.5-3.5 s
on a loaded 2-core host) is not on the side's path. A side that fails stops the other one
before its next flow × viewport (:class:`~diffie.browsing.Abandoned`): a base that does not
deploy leaves nothing to compare against, a cancelled run stops everywhere. A head that does not
deploy is the change's fault (``deploy_error``); base goes on, for the report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from diffie.artifacts import ArtifactDir
from diffie.browsing import Abandoned, browse_side, noise_floor, wants_noise_floor
from diffie.capture import Capture, Side
from diffie.control import ProgressLog
from diffie.deps import FlowRunner, JobDeps
from diffie.errors import DeployError, NoFreeSlot
from diffie.sandbox.base import Machine
from diffie.sandbox.deploy import MIGRATE_CHARS, MIGRATE_OUTPUT, check_tree_size, ready_urls
from diffie.server_state import ServerState
from diffie.services import ServiceUrls
from diffie.spec import SandboxSpec, Spec


@dataclass(frozen=True)
class SideVm:
    """What one side deploys: its tree, with its sandbox section, in a VM of ``image``."""

    side: Side
    image: str                 # the lease key of the side's image
    units: list[str]           # the systemd units of the app (journal, readiness after revert)
    tree: Path
    sandbox: SandboxSpec


@dataclass
class VmSides:
    """What each side's browser saw (``head`` None when head did not deploy: ``head_error``)."""

    base: list[Capture]
    head: list[Capture] | None
    head2: list[Capture] | None = None
    head_error: DeployError | None = None
    parallel: bool = False           # whether head's VM ran beside base's


@dataclass
class _Shared:
    """What the two side threads tell each other."""

    base_leased: threading.Event = field(default_factory=threading.Event)   # holds its slot
    base_done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    captures: dict[str, list[Capture]] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)


def deploy_and_browse(deps: JobDeps, spec: Spec, base: SideVm, head: SideVm, out: ArtifactDir,
                      clock: datetime, say: ProgressLog, *, run_id: str,
                      meta: dict[str, str]) -> VmSides:
    """Both sides (see the module doc). Raises base's error (:class:`DeployError` included: the
    caller words it) or, when base succeeded, any error of head's other than a failed deploy."""
    shared = _Shared()
    result = VmSides(base=[], head=None)

    def deploy(vm: Machine, job: SideVm) -> tuple[ServerState, ServiceUrls]:
        state = ServerState(vm, clock, units=job.units, say=say, label=f"{job.side}: ")
        return state, deploy_tree(deps, vm, job, state, say, meta)

    def run_base() -> None:
        try:
            say.phase("deploy base")
            with deps.sandbox.lease(base.image, run_id=run_id,
                                    on_slot=shared.base_leased.set) as vm:
                with _browser_while_deploying(deps, lambda: deploy(vm, base), "base",
                                              say) as (deployed, browser):
                    state, url = deployed.result()
                    shared.captures["base"] = browse_side(browser, spec, url, "base", out, clock,
                                                          say, state, stop=shared.stop)
        except BaseException as exc:
            shared.errors["base"] = exc
            shared.stop.set()
        finally:
            shared.base_leased.set()
            shared.base_done.set()

    def run_head() -> None:
        try:
            shared.base_leased.wait()
            with ExitStack() as stack:
                vm = _second_vm(deps, head.image, run_id, stack, say) \
                    if deps.settings.parallel_sides and not shared.stop.is_set() else None
                result.parallel = vm is not None
                if vm is None:
                    shared.base_done.wait()
                    if shared.stop.is_set():
                        return
                    say.phase("deploy head")
                    vm = stack.enter_context(deps.sandbox.lease(head.image, run_id=run_id))
                with _browser_while_deploying(deps, lambda: deploy(vm, head), "head",
                                              say) as (deployed, browser):
                    try:
                        state, url = deployed.result()
                    except DeployError as exc:
                        say(f"head failed to deploy: {exc}")
                        result.head_error = exc
                        return
                    captures = browse_side(browser, spec, url, "head", out, clock, say, state,
                                           stop=shared.stop)
                    shared.base_done.wait()
                    if "base" not in shared.captures:
                        return
                    result.head = captures
                    if wants_noise_floor(deps.settings, spec):
                        result.head2 = noise_floor(browser, deps.settings, spec, url,
                                                   shared.captures["base"], captures, out, clock,
                                                   say, state, stop=shared.stop)
        except BaseException as exc:
            shared.errors["head"] = exc
            shared.stop.set()

    _run_both(run_base, run_head, shared.stop)
    for side in ("base", "head"):
        exc = shared.errors.get(side)
        if exc is not None and not isinstance(exc, Abandoned):
            raise exc
    result.base = shared.captures["base"]
    return result


@contextmanager
def _browser_while_deploying(deps: JobDeps, deploy: Callable[[], tuple[ServerState, ServiceUrls]],
                             side: Side, say: ProgressLog,
                             ) -> Iterator[tuple[Future[tuple[ServerState, ServiceUrls]],
                                                 FlowRunner]]:
    """``deploy`` in a helper thread while this thread starts the side's browser; yields the
    deploy's future (its ``result()`` raises the deploy's error) and the browser. A browser
    that cannot start waits for the deploy to end (the VM's lease outlives it) and raises."""
    with ThreadPoolExecutor(1, thread_name_prefix=f"diffie-deploy-{side}") as pool:
        deployed = pool.submit(deploy)
        start = time.monotonic()
        with deps.browser() as browser:
            if not deployed.done():
                say(f"{side}: browser started in {time.monotonic() - start:.1f} s while "
                    "deploying")
            yield deployed, browser


def _second_vm(deps: JobDeps, image: str, run_id: str, stack: ExitStack,
               say: ProgressLog) -> Machine | None:
    """Head's VM beside base's when a slot is free now; None (head after base) when not."""
    try:
        vm = stack.enter_context(deps.sandbox.lease(image, run_id=run_id, wait_s=0))
    except NoFreeSlot:
        say("head: no second VM slot is free; head is deployed once base is done")
        return None
    say.phase("deploy head")
    say("head: a second VM slot was free; head is deployed beside base")
    return vm


def _run_both(base: Callable[[], None], head: Callable[[], None], stop: threading.Event) -> None:
    """Run both sides in threads and wait for both; if this thread is interrupted (a soft time
    limit, a signal), both are told to stop and waited for, so no lease outlives the run."""
    threads = [threading.Thread(target=work, name=f"diffie-{name}", daemon=True)
               for name, work in (("base", base), ("head", head))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        stop.set()
        for thread in threads:
            thread.join()
        raise


def deploy_tree(deps: JobDeps, vm: Machine, job: SideVm, state: ServerState, say: ProgressLog,
                meta: dict[str, str]) -> ServiceUrls:
    """Deploy ``job.tree``, then checkpoint the VM: every flow × viewport starts from here. The
    migrations' output goes to ``meta`` (the report shows it). Returns the URL of each of the
    app's services (the side's browser may reach every one)."""
    settings = deps.settings
    check_tree_size(job.tree, max_files=settings.max_repo_files,
                    max_bytes=settings.max_repo_bytes)
    state.set_clock()
    say(f"{job.side}: guest clock set to {state.clock.isoformat()}; deploying")
    migrations: list[str] = []

    def progress(line: str) -> None:
        if line.startswith(MIGRATE_OUTPUT):
            migrations.append(line[len(MIGRATE_OUTPUT):])
            meta[f"{job.side} migrations"] = "\n".join(migrations)[-MIGRATE_CHARS:]
        say(line)

    urls = ServiceUrls.of(deps.deploy(vm, job.tree, job.sandbox, progress, units=state.units),
                          job.sandbox.effective_services[0].name)
    say(f"{job.side}: deployed, app at {urls.describe()}")
    state.checkpoint(list(urls.values()), ready_urls(urls, job.sandbox))
    return urls
