"""The worker's job, ``run_change``, with the shipped fakes (diffie.fakes): no VM, no Chromium,
no git — real files, real HTTP, the real compare/judge/report code. Each outcome the job can
reach, and cancellation at every phase it passes."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from diffie.control import Lines, RunCancelled
from diffie.deps import JobDeps
from diffie.fakes import DEPLOY_FAILS, FakeSandbox, FilesSource, fake_deps
from diffie.pipeline import run_change, with_prerequisites
from diffie.run_store import ChangeInput
from diffie.spec import parse_spec
from diffie.verdict import Verdict
from tests.conftest import make_settings

SPEC = """\
viewports:
  desktop: {width: 800, height: 600}
  mobile: {width: 390, height: 700}
flows:
  - name: home
    steps:
      - goto: /
      - expect_text: {selector: h1, text: Shop}
      - screenshot: home
  - name: about
    viewports: [desktop]
    steps:
      - goto: /about.html
sandbox:
  image: shop
  deploy: ["systemctl restart shop"]
  port: 8000
  ready_path: /health
"""
HOME = "<h1>Shop</h1><p>welcome</p>"
APP = {".diffie.yml": SPEC, "index.html": HOME, "about.html": "<p>about</p>", "health": "ok"}


def verify(tmp_path: Path, head: dict[str, str], *, base: dict[str, str] | None = None,
           noise_floor: bool = False, stop_at: str | None = None,
           slots: int | None = 1) -> tuple[Verdict, FakeSandbox, list[str]]:
    """One repo-mode run on fake VMs; ``slots=1`` (the default here) makes it the sequential
    run whose order of events the tests below read; None: base and head at once."""
    settings = make_settings(tmp_path / "data", noise_floor=noise_floor)
    sandbox = FakeSandbox(slots=slots)
    deps: JobDeps = fake_deps(settings, sandbox=sandbox,
                              sources={"repo": FilesSource(base or APP, head)})
    lines: list[str] = []

    def record(line: str) -> None:
        lines.append(line)
        if stop_at is not None and line == f"phase: {stop_at}":
            raise RunCancelled("cancelled by the test")

    change = ChangeInput(run_id=secrets.token_hex(8), mode="repo", repo="fake", base_rev="b",
                         head_rev="h")
    return run_change(change, deps, Lines(record)), sandbox, lines


def test_the_same_app_on_both_sides_passes(tmp_path: Path) -> None:
    verdict, sandbox, lines = verify(tmp_path, APP)
    assert verdict.status == "pass", verdict.summary
    assert [c.verified for c in verdict.coverage] == [True] * 3
    events = [e[0] for e in sandbox.log]
    assert events.count("lease") == 2 and events.count("destroy") == 2
    assert events.count("checkpoint") == 2
    assert [line for line in lines if line.startswith("phase: ")] == [
        "phase: checkout", "phase: image", "phase: deploy base", "phase: browse base 0/3",
        "phase: browse base 1/3", "phase: browse base 2/3", "phase: browse base 3/3",
        "phase: deploy head", "phase: browse head 0/3", "phase: browse head 1/3",
        "phase: browse head 2/3", "phase: browse head 3/3", "phase: compare", "phase: report"]


def test_a_changed_page_is_a_visual_change(tmp_path: Path) -> None:
    verdict, _, _ = verify(tmp_path, {**APP, "index.html": HOME.replace("welcome", "hello")})
    assert verdict.status == "changed", verdict.summary
    kinds = {(f.kind, f.flow, f.viewport) for f in verdict.findings}
    assert kinds == {("visual_change", "home", "desktop"), ("visual_change", "home", "mobile")}


def test_a_missing_page_and_a_missing_text_fail(tmp_path: Path) -> None:
    head = {k: v for k, v in APP.items() if k != "about.html"} | {"index.html": "<h1>Shed</h1>"}
    verdict, _, _ = verify(tmp_path, head)
    assert verdict.status == "fail"
    kinds = {(f.kind, f.flow) for f in verdict.findings}
    assert ("request_failed", "about") in kinds and ("assertion_failed", "home") in kinds


def test_a_head_that_does_not_deploy_is_a_deploy_error(tmp_path: Path) -> None:
    verdict, sandbox, _ = verify(tmp_path, {**APP, DEPLOY_FAILS: "ModuleNotFoundError: x"})
    assert verdict.status == "fail"
    (finding,) = verdict.findings
    assert finding.kind == "deploy_error"
    assert finding.details["command"] == "systemctl restart shop"
    assert "ModuleNotFoundError" in finding.details["output_tail"]
    assert [e[0] for e in sandbox.log].count("destroy") == 2


def test_a_base_that_does_not_deploy_is_an_error_that_says_so(tmp_path: Path) -> None:
    verdict, sandbox, _ = verify(tmp_path, APP, base={**APP, DEPLOY_FAILS: "boom"})
    assert verdict.status == "error"
    assert "failed to deploy, so there is nothing to compare against" in \
        (verdict.reason or "")
    assert "boom" in (verdict.reason or "")
    assert [e[0] for e in sandbox.log] == ["lease", "set_clock", "put_tree", "destroy"]


def test_a_bad_head_spec_is_an_error_naming_file_line_and_field(tmp_path: Path) -> None:
    bad = SPEC.replace("- goto: /about.html", "- goto: {}")
    verdict, sandbox, _ = verify(tmp_path, {**APP, ".diffie.yml": bad})
    assert verdict.status == "error"
    assert ".diffie.yml:13 (flows[1].steps[0])" in (verdict.reason or "")
    assert sandbox.log == []                                              # nothing was leased


def test_the_noise_floor_renders_head_again_where_it_differs_from_its_deployed_state(
        tmp_path: Path) -> None:
    changed = {**APP, "index.html": HOME.replace("welcome", "hello")}
    verdict, sandbox, lines = verify(tmp_path, changed, noise_floor=True)
    assert verdict.status == "changed"
    # home's screenshots differ at both viewports; about has none and passed: not again
    assert "phase: browse head2 2/2" in lines and "head2: flow about @ desktop" not in lines
    assert any("noise floor: head again for 2 of 3" in line for line in lines), lines
    head_lease = len(sandbox.log) - sandbox.log[::-1].index(("lease", "shop")) - 1
    assert ("reset",) in sandbox.log[head_lease:]          # head2 starts from the checkpoint


def test_the_noise_floor_is_skipped_when_head_matches_base(tmp_path: Path) -> None:
    verdict, sandbox, lines = verify(tmp_path, APP, noise_floor=True)
    assert verdict.status == "pass"
    assert not any("head2" in line for line in lines)
    assert any("head matches base in all 3" in line for line in lines), lines
    head_lease = len(sandbox.log) - sandbox.log[::-1].index(("lease", "shop")) - 1
    resets = [e for e in sandbox.log if e == ("reset",)]
    assert sandbox.log[head_lease:].count(("reset",)) == len(resets) // 2     # as many as base


PHASES = ["checkout", "deploy base", "browse base 0/3", "browse base 2/3", "deploy head",
          "browse head 3/3", "compare", "report"]


@pytest.mark.parametrize("phase", PHASES)
def test_a_run_cancelled_at_any_phase_stops_there_and_leaves_no_vm(tmp_path: Path,
                                                                   phase: str) -> None:
    with pytest.raises(RunCancelled):
        verify(tmp_path, {**APP, "index.html": "<h1>Shop</h1>"}, stop_at=phase)
    runs = tmp_path / "data" / "runs"
    [run_dir] = list(runs.iterdir())
    assert not (run_dir / "verdict.json").exists()            # nothing judged after the stop
    progress = (run_dir / "progress.log").read_text()
    assert progress.rstrip().endswith(f"phase: {phase}")


def test_cancellation_releases_every_lease(tmp_path: Path) -> None:
    for phase in ("browse base 1/3", "browse head 1/3"):
        settings = make_settings(tmp_path / phase.replace(" ", "-").replace("/", "-"))
        sandbox = FakeSandbox()
        deps = fake_deps(settings, sandbox=sandbox, sources={"repo": FilesSource(APP, APP)})

        def stop(line: str, phase: str = phase) -> None:
            if line == f"phase: {phase}":
                raise RunCancelled("stop")

        with pytest.raises(RunCancelled):
            run_change(ChangeInput(run_id=secrets.token_hex(8), mode="repo", repo="x",
                                   base_rev="b", head_rev="h"), deps, Lines(stop))
        events = [e[0] for e in sandbox.log]
        assert events.count("lease") == events.count("destroy") >= 1


def test_the_spec_the_run_followed_is_kept(tmp_path: Path) -> None:
    verify(tmp_path, APP)
    [run_dir] = list((tmp_path / "data" / "runs").iterdir())
    kept = json.loads((run_dir / "spec.json").read_text())
    assert [f["name"] for f in kept["flows"]] == ["home", "about"]
    assert kept["sandbox"]["deploy"] == ["systemctl restart shop"]



def test_a_reset_false_flow_rendered_again_brings_the_runs_it_depends_on() -> None:
    spec = parse_spec("""\
viewports:
  desktop: {width: 800, height: 600}
  mobile: {width: 390, height: 700}
flows:
  - name: first
    viewports: [desktop]
    steps: [{goto: /}]
  - name: writes
    steps: [{goto: /w}]
  - name: reads
    reset: false
    viewports: [desktop]
    steps: [{goto: /r}]
  - name: reads-more
    reset: false
    viewports: [desktop]
    steps: [{goto: /r2}]
""")
    assert with_prerequisites(spec, {("first", "desktop")}) == {("first", "desktop")}
    # reads-more sees what reads and writes (both viewports, in order) left since the revert
    assert with_prerequisites(spec, {("reads-more", "desktop")}) == {
        ("writes", "mobile"), ("reads", "desktop"), ("reads-more", "desktop")}
