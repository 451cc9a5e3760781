"""Repo mode's base and head in two VMs at once (diffie.vm_sides), with the shipped fakes: the
deploys really overlap (a barrier both must reach), the verdict is the sequential run's, a
failing side stops the other, and two runs sharing two slots never deadlock."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from diffie.artifacts import ArtifactDir
from diffie.browsing import Abandoned, browse_side
from diffie.control import Lines, ProgressLog, RunCancelled
from diffie.deps import FlowRunner, JobDeps
from diffie.errors import BrowserError
from diffie.fakes import DEPLOY_FAILS, FakeSandbox, FilesSource, PageBrowser, fake_deps, static_deploy
from diffie.pipeline import run_change, run_clock
from diffie.run_store import ChangeInput
from diffie.sandbox.base import Machine
from diffie.services import ServiceUrls
from diffie.spec import SandboxSpec, parse_spec
from diffie.verdict import Verdict
from tests.conftest import make_settings
from tests.unit.test_run_change import APP, HOME, SPEC

CHANGED = {**APP, "index.html": HOME.replace("welcome", "hello")}


def _deps(tmp_path: Path, base: dict[str, str], head: dict[str, str], sandbox: FakeSandbox, *,
          barrier: threading.Barrier | None = None, **settings: object) -> JobDeps:
    deps = fake_deps(make_settings(tmp_path / "data", **settings), sandbox=sandbox,
                     sources={"repo": FilesSource(base, head)})
    if barrier is None:
        return deps

    def deploy_together(machine: Machine, source: Path, spec: SandboxSpec,
                        progress: Callable[[str], None] | None = None, *,
                        units: Sequence[str] | None = None) -> str | ServiceUrls:
        barrier.wait()            # both sides are deploying at this moment, or this times out
        return static_deploy(machine, source, spec, progress, units=units)

    return replace(deps, deploy=deploy_together)


def _run(deps: JobDeps, lines: list[str] | None = None,
         on_line: Callable[[str], None] | None = None) -> Verdict:
    def record(line: str) -> None:
        if lines is not None:
            lines.append(line)
        if on_line is not None:
            on_line(line)

    change = ChangeInput(run_id=secrets.token_hex(8), mode="repo", repo="fake", base_rev="b",
                         head_rev="h")
    return run_change(change, deps, Lines(record))


def _findings(verdict: Verdict) -> list[tuple[str, str | None, str | None]]:
    return sorted((f.kind, f.flow, f.viewport) for f in verdict.findings)


@pytest.mark.parametrize("head", [APP, CHANGED], ids=["same", "changed"])
def test_a_second_free_slot_deploys_head_beside_base_with_the_same_verdict(
        tmp_path: Path, head: dict[str, str]) -> None:
    together = FakeSandbox(slots=2)
    lines: list[str] = []
    verdict = _run(_deps(tmp_path / "two", APP, head, together,
                         barrier=threading.Barrier(2, timeout=20), noise_floor=True), lines)
    assert together.most_held == 2
    assert any("a second VM slot was free" in line for line in lines), lines
    one_after_other = _run(_deps(tmp_path / "one", APP, head, FakeSandbox(slots=1),
                                 noise_floor=True))
    assert verdict.status == one_after_other.status
    assert _findings(verdict) == _findings(one_after_other)
    phases = {line for line in lines if line.startswith("phase: ")}
    assert {"phase: deploy base", "phase: browse base 3/3", "phase: deploy head",
            "phase: browse head 3/3", "phase: compare", "phase: report"} <= phases
    assert together.leases == 2 and together.held == 0


def test_without_a_second_slot_head_waits_for_base_to_be_done(tmp_path: Path) -> None:
    sandbox = FakeSandbox(slots=1)
    lines: list[str] = []
    verdict = _run(_deps(tmp_path, APP, APP, sandbox), lines)
    assert verdict.status == "pass"
    assert sandbox.most_held == 1
    assert any("no second VM slot is free" in line for line in lines)
    phases = [line for line in lines if line.startswith("phase: ")]
    assert phases.index("phase: deploy head") > phases.index("phase: browse base 3/3")


def test_parallel_sides_off_keeps_one_vm_at_a_time(tmp_path: Path) -> None:
    sandbox = FakeSandbox(slots=2)
    verdict = _run(_deps(tmp_path, APP, APP, sandbox, parallel_sides=False))
    assert verdict.status == "pass" and sandbox.most_held == 1


def test_a_base_that_does_not_deploy_is_the_runs_error_and_head_is_released(
        tmp_path: Path) -> None:
    sandbox = FakeSandbox(slots=2)
    verdict = _run(_deps(tmp_path, {**APP, DEPLOY_FAILS: "boom"}, APP, sandbox,
                         barrier=threading.Barrier(2, timeout=20)))
    assert verdict.status == "error"
    assert "failed to deploy, so there is nothing to compare against" in (verdict.reason or "")
    assert "boom" in (verdict.reason or "")
    assert sandbox.held == 0 and [e[0] for e in sandbox.log].count("destroy") == sandbox.leases


def test_a_side_told_to_stop_stops_before_its_next_pair(tmp_path: Path) -> None:
    spec = parse_spec(SPEC)
    stop = threading.Event()
    stop.set()
    out = ArtifactDir(tmp_path / "run").ensure()
    say = ProgressLog(tmp_path / "progress.log", Lines(lambda _line: None))
    with PageBrowser() as browser, pytest.raises(Abandoned):
        browse_side(browser, spec, "http://127.0.0.1:9", "head", out, run_clock(), say,
                    stop=stop)
    assert not list((tmp_path / "run").rglob("*.png"))                # no pair was browsed


def test_a_head_that_does_not_deploy_beside_base_is_a_deploy_error(tmp_path: Path) -> None:
    sandbox = FakeSandbox(slots=2)
    verdict = _run(_deps(tmp_path, APP, {**APP, DEPLOY_FAILS: "ImportError: y"}, sandbox,
                         barrier=threading.Barrier(2, timeout=20)))
    assert verdict.status == "fail"
    assert [f.kind for f in verdict.findings] == ["deploy_error"]
    assert sandbox.most_held == 2 and sandbox.held == 0


def test_a_cancelled_run_stops_both_sides_and_releases_both_vms(tmp_path: Path) -> None:
    sandbox = FakeSandbox(slots=2)

    def cancel(line: str) -> None:
        if line == "phase: browse base 1/3":
            raise RunCancelled("cancelled by the test")

    lines: list[str] = []
    with pytest.raises(RunCancelled):
        _run(_deps(tmp_path, APP, CHANGED, sandbox), lines, on_line=cancel)
    assert sandbox.held == 0 and [e[0] for e in sandbox.log].count("destroy") == sandbox.leases
    assert "phase: compare" not in lines


def test_two_runs_sharing_two_slots_both_finish(tmp_path: Path) -> None:
    """Each run wants two VMs; with two slots between them, neither may hold one and wait
    for another (that would deadlock): both finish, each with its own verdict."""
    sandbox = FakeSandbox(slots=2)
    verdicts: dict[str, Verdict] = {}

    def one(name: str, head: dict[str, str]) -> None:
        verdicts[name] = _run(_deps(tmp_path / name, APP, head, sandbox, noise_floor=True))

    threads = [threading.Thread(target=one, args=("same", APP)),
               threading.Thread(target=one, args=("changed", CHANGED))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert verdicts["same"].status == "pass" and verdicts["changed"].status == "changed"
    assert sandbox.held == 0 and sandbox.most_held <= 2


def test_each_side_starts_its_browser_while_its_deploy_runs(tmp_path: Path) -> None:
    """The deploy waits until its side's browser has started: run one after the other (the
    browser after the deploy), this would time out."""
    started = threading.Semaphore(0)
    deps = _deps(tmp_path, APP, CHANGED, FakeSandbox(slots=1))
    browsers = deps.browser

    @contextmanager
    def browser() -> Iterator[FlowRunner]:
        with browsers() as runner:
            started.release()
            yield runner

    def deploy_after_browser(machine: Machine, source: Path, spec: SandboxSpec,
                             progress: Callable[[str], None] | None = None, *,
                             units: Sequence[str] | None = None) -> str | ServiceUrls:
        assert started.acquire(timeout=20), "the side's browser did not start during its deploy"
        return static_deploy(machine, source, spec, progress, units=units)

    verdict = _run(replace(deps, browser=browser, deploy=deploy_after_browser))
    assert verdict.status == "changed", verdict.reason


def test_a_browser_that_cannot_start_waits_for_the_deploy_and_releases_the_vm(
        tmp_path: Path) -> None:
    sandbox = FakeSandbox(slots=2)
    deploys: list[str] = []
    deps = _deps(tmp_path, APP, APP, sandbox)

    def no_browser() -> AbstractContextManager[FlowRunner]:
        raise BrowserError("could not launch Chromium at '/nowhere'")

    def slow_deploy(machine: Machine, source: Path, spec: SandboxSpec,
                    progress: Callable[[str], None] | None = None, *,
                    units: Sequence[str] | None = None) -> str | ServiceUrls:
        time.sleep(0.3)
        url = static_deploy(machine, source, spec, progress, units=units)
        deploys.append(source.name)
        return url

    verdict = _run(replace(deps, browser=no_browser, deploy=slow_deploy))
    assert verdict.status == "error"
    assert "could not launch Chromium" in (verdict.reason or "")
    assert len(deploys) == sandbox.leases >= 1          # every deploy ended before its release
    assert sandbox.held == 0
