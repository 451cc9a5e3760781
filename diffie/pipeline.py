"""``run_change``: the worker's whole job, as one readable function.

    URL mode:   browse base URL and head URL, two browsers at once (─> head again where it
                differs from base: the noise floor; diffie.browsing)
    repo mode:  check out base and head ─> read head's .diffie.yml (an untrusted pull request:
                its flows, with the base's sandbox — diffie.spec_trust) ─> each side's
                image: the operator's (may the repository use it?) or the repository's
                own recipe, built on demand (diffie.run_images)
                ─> VM 1: restore, set clock, deploy base, checkpoint, browse
                ─> VM 2 (beside VM 1 when a second slot is free: diffie.vm_sides): restore,
                   set clock, deploy head, checkpoint, browse (─> head again where it
                   differs from base)
                (each flow × viewport from the checkpoint: diffie.server_state)
    then:       compare ─> judge ─> HTML report, verdict.json, JUnit, CTRF

Everything lands in the run's artifact folder (``<data>/runs/<run id>/``). Problems the user
can fix (an invalid spec, a missing revision, a base that does not deploy) end as an ``error``
verdict with a readable reason; a head that does not deploy is a ``deploy_error`` finding
(the change broke the deploy: ``fail``). Every progress line goes to ``progress.log`` and to
the run's :class:`~diffie.control.RunControl`, whose ``phase()`` (checkout, deploy, each
flow × viewport, compare, report) is the heartbeat and the point where a cancelled run stops.
What the job acts on (browser, sandbox, deployer, sources) comes in :class:`~diffie.deps.JobDeps`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from diffie import links
from diffie.artifacts import ArtifactDir
from diffie.browsing import browse_sides, noise_floor, wants_noise_floor, with_prerequisites
from diffie.capture import Capture, Side
from diffie.compare.coverage import coverage_of
from diffie.compare.findings import compare_runs
from diffie.config import Settings
from diffie.control import ProgressLog, RunCancelled, RunControl
from diffie.deps import JobDeps
from diffie.errors import DeployError, DiffieError, RunError
from diffie.render.ctrf import render_ctrf
from diffie.render.html import render_report
from diffie.render.junit import render_junit
from diffie.run_images import side_images
from diffie.run_store import ChangeInput
from diffie.spec import SandboxSpec, Spec, parse_spec
from diffie.spec_limits import SpecLimits
from diffie.spec_trust import read_spec, run_spec
from diffie.url_mode import strict_origin
from diffie.verdict import Coverage, Finding, Flaky, NotVerified, Verdict, error_verdict, judge
from diffie.vm_sides import SideVm, deploy_and_browse

log = logging.getLogger(__name__)

__all__ = ["RunCancelled", "run_change", "publish_error", "with_prerequisites", "write_outputs"]


@dataclass
class Sides:
    """What the browser saw on each side (``head`` is None when head could not be deployed)."""

    spec: Spec
    base: list[Capture]
    head: list[Capture] | None
    head2: list[Capture] | None = None
    findings: list[Finding] = field(default_factory=list)     # deploy_error, ...
    meta: dict[str, str] = field(default_factory=dict)


def run_clock() -> datetime:
    """One fixed instant per run: the guest clock and the browser clock of every side."""
    return datetime.now(UTC).replace(microsecond=0)


def fresh_out(settings: Settings, run_id: str) -> ArtifactDir:
    """The run's artifact folder, emptied (a retried run starts clean)."""
    out = ArtifactDir(settings.artifacts_dir / run_id)
    if out.root.exists():
        shutil.rmtree(out.root)
    return out.ensure()


def keep_spec(out: ArtifactDir, spec: Spec) -> None:
    """The spec the run follows, as parsed (for an untrusted head: merged with the base's),
    in ``spec.json``: what a reviewer checks when a run did not do what they expected."""
    out.path("spec.json").write_text(spec.model_dump_json(indent=2), encoding="utf-8")


def run_change(change: ChangeInput, deps: JobDeps, control: RunControl) -> Verdict:
    """Verify one change; returns its verdict (``error`` when it could not be verified).

    ``deps``: the browser, sandbox, deployer and sources (:mod:`diffie.composition` builds the
    real ones); ``control``: heartbeat and cancellation at each phase (:mod:`diffie.control`).
    Raises :class:`RunCancelled` when ``control`` says stop, and for infrastructure failures
    the caller records as ``error``.
    """
    settings = deps.settings
    out = fresh_out(settings, change.run_id)
    say = ProgressLog(out.path("progress.log"), control)
    clock = run_clock()
    try:
        if change.mode == "url":
            sides = _url_mode(deps, change, out, clock, say)
        else:
            sides = _repo_mode(deps, change, out, clock, say)
    except RunCancelled:
        raise
    except DiffieError as exc:
        say(f"could not verify: {exc}")
        return publish_error(settings, change, str(exc), out=out)
    return _judge_and_publish(settings, change, sides, out, say, clock,
                              duration_s=say.elapsed())


# --- URL mode -----------------------------------------------------------------------------------

def reachable(url: str, timeout_s: float = 15.0) -> str | None:
    """None when ``url`` answers HTTP at all (any status); else why not — one message whatever
    went wrong (closed port, another protocol, a timeout), so a run's reason never tells what
    listens on a port (no port-scan oracle)."""
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False, verify=False) as client:
            client.get(url)
        return None
    except httpx.HTTPError as exc:
        log.info("URL mode: %s did not answer HTTP: %r", url, exc)
        return f"the app at {_origin(url)} did not answer HTTP"


def _origin(url: str) -> str:
    try:
        return strict_origin(url)
    except ValueError:
        return "this URL"


def _url_mode(deps: JobDeps, change: ChangeInput, out: ArtifactDir, clock: datetime,
              say: ProgressLog) -> Sides:
    settings = deps.settings
    if not change.base_url or not change.head_url or not change.spec_text:
        raise RunError("a URL-mode change needs base_url, head_url and a spec")
    spec = parse_spec(change.spec_text, file=".diffie.yml",
                      limits=SpecLimits.from_settings(settings), url_mode=True)
    keep_spec(out, spec)
    say.phase("check URLs")
    problem = reachable(change.base_url)
    if problem:
        # Without a working base there is nothing to compare against: not the change's fault.
        raise RunError(f"base URL {change.base_url} is unreachable: {problem}")
    head_problem = reachable(change.head_url)
    if head_problem:
        say(f"head URL {change.head_url} is unreachable: {head_problem}; its flows will fail")
    sides: list[tuple[Side, str]] = [("base", change.base_url), ("head", change.head_url)]
    got = browse_sides(deps, spec, sides, out, clock, say)
    head2 = None
    if wants_noise_floor(settings, spec) and not head_problem:
        with deps.browser() as browser:
            head2 = noise_floor(browser, settings, spec, change.head_url, got["base"],
                                 got["head"], out, clock, say)
    return Sides(spec, got["base"], got["head"], head2,
                 meta={"mode": "url", "base": change.base_url, "head": change.head_url})


# --- repo mode ----------------------------------------------------------------------------------

def _repo_mode(deps: JobDeps, change: ChangeInput, out: ArtifactDir, clock: datetime,
               say: ProgressLog) -> Sides:
    settings = deps.settings
    if not change.repo or not change.base_rev or not change.head_rev:
        raise RunError("a repo-mode change needs repo, base and head")
    say.phase("checkout")
    with tempfile.TemporaryDirectory(prefix=f"diffie-{change.run_id[:8]}-") as tmp:
        base_tree, head_tree = Path(tmp) / "base", Path(tmp) / "head"
        base_sha, head_sha = deps.source_for(change.mode).materialise(change, base_tree, head_tree)
        say(f"checked out base {base_sha[:12]} and head {head_sha[:12]}")
        spec = run_spec(base_tree, head_tree, change.spec_path,
                        limits=SpecLimits.from_settings(settings),
                        untrusted_head=change.untrusted_head, head_label=head_sha[:12],
                        base_label=base_sha[:12])
        keep_spec(out, spec)
        if change.untrusted_head:
            say("untrusted head: sandbox, deploy commands and allowed origins from the base's "
                f"{change.spec_path}, flows and viewports from the head's")
        if spec.sandbox is None:
            raise RunError(f"{change.spec_path} has no 'sandbox' section: repo mode deploys the "
                           "change in a VM and needs the image, deploy commands and app port")
        base_sandbox = (spec.sandbox if change.untrusted_head else
                        base_sandbox_of(base_tree, change.spec_path, settings, say)
                        or spec.sandbox)
        say.phase("image")
        base_image, head_image = side_images(settings, deps.build_image, base_sandbox,
                                             spec.sandbox, change, base_tree, head_tree, say)
        meta = {"mode": change.mode, "repo": change.repo, "base": base_sha, "head": head_sha,
                "image": head_image.label, "clock": clock.isoformat()}
        if base_image != head_image:
            meta["base_image"] = base_image.label
        try:
            both = deploy_and_browse(
                deps, spec, SideVm("base", base_image.lease, base_image.units(base_sandbox),
                                   base_tree, base_sandbox),
                SideVm("head", head_image.lease, head_image.units(spec.sandbox), head_tree,
                       spec.sandbox), out, clock, say, run_id=change.run_id, meta=meta)
        except DeployError as exc:
            raise RunError(f"base {base_sha[:12]} failed to deploy, so there is nothing to "
                           f"compare against: {_deploy_text(exc)}") from exc
    if both.head_error is not None:
        return Sides(spec, both.base, None, findings=[_deploy_finding(both.head_error)],
                     meta=meta)
    return Sides(spec, both.base, both.head, both.head2, meta=meta)


def base_sandbox_of(base_tree: Path, rel: str, settings: Settings,
                    say: ProgressLog) -> SandboxSpec | None:
    """The base revision's own sandbox section (its image, deploy commands, port), so each side
    is deployed the way its revision says; None when the base has no usable one (the head's is
    used for both, as before the spec had one)."""
    try:
        base = read_spec(base_tree, rel, limits=SpecLimits.from_settings(settings), side="base")
    except DiffieError as exc:
        say(f"base: its {rel} is not usable ({str(exc)[:300]}); deploying it with the head's "
            "sandbox section")
        return None
    return base.sandbox if base is not None else None


def _deploy_text(exc: DeployError) -> str:
    code = f" (exit {exc.exit_code})" if exc.exit_code is not None else ""
    tail = f"\n{exc.output_tail[-2000:]}" if exc.output_tail else ""
    return f"{exc}{code}" + (f"; command: {exc.command}" if exc.command else "") + tail


def _deploy_finding(exc: DeployError) -> Finding:
    return Finding(kind="deploy_error", message=f"the change failed to deploy: {exc}",
                   details={"command": exc.command, "exit_code": exc.exit_code,
                            "output_tail": exc.output_tail[-4000:], "key": exc.command or str(exc)})


# --- judge and publish --------------------------------------------------------------------------

def _judge_and_publish(settings: Settings, change: ChangeInput, sides: Sides, out: ArtifactDir,
                       say: ProgressLog, clock: datetime, *, duration_s: float) -> Verdict:
    findings: list[Finding] = list(sides.findings)
    flaky: list[Flaky] = []
    coverage: list[Coverage] = []
    not_verified: list[NotVerified] = []
    if sides.head is not None:
        say.phase("compare")
        found, flaky = compare_runs(sides.base, sides.head, out, head2=sides.head2,
                                    max_pixels=settings.max_screenshot_pixels,
                                    threshold=sides.spec.visual_threshold)
        findings += found
        coverage, not_verified = coverage_of(sides.spec, sides.base, sides.head)
    viewports = len({vp for f in sides.spec.flows for vp, _ in sides.spec.flow_viewports(f)})
    verdict = judge(change.run_id, findings, flaky=flaky, flows=len(sides.spec.flows),
                    viewports=viewports, duration_s=round(duration_s, 2),
                    report_url=links.report_url(settings, change.run_id), coverage=coverage,
                    not_verified=not_verified,
                    fail_on_not_verified=sides.spec.fail_on_not_verified,
                    approvals=change.approvals)
    captures = {"base": sides.base, "head": sides.head or [], "head2": sides.head2 or []}
    say.phase("report")
    meta = {**sides.meta, "run": change.run_id, "clock": clock.isoformat()}
    write_outputs(verdict, captures, out, title=change.title or _title(change), meta=meta)
    say(f"verdict: {verdict.status} ({verdict.summary})")
    return verdict


def _title(change: ChangeInput) -> str:
    if change.mode == "url":
        return f"{change.base_url} → {change.head_url}"
    return f"{change.repo} {str(change.base_rev)[:12]} → {str(change.head_rev)[:12]}"


def write_outputs(verdict: Verdict, captures: dict[str, list[Capture]], out: ArtifactDir, *,
                  title: str, meta: dict[str, str]) -> None:
    """index.html, verdict.json, junit.xml and ctrf.json in the run's folder."""
    out.path("verdict.json").write_text(verdict.model_dump_json(indent=2), encoding="utf-8")
    out.path("junit.xml").write_text(render_junit(verdict, captures), encoding="utf-8")
    out.path("ctrf.json").write_text(json.dumps(render_ctrf(verdict, captures), indent=2),
                                     encoding="utf-8")
    render_report(verdict, captures, out, title=title, meta=meta)


def publish_error(settings: Settings, change: ChangeInput, reason: str, *,
                  out: ArtifactDir | None = None, findings: list[Finding] | None = None) -> Verdict:
    """An ``error`` verdict with its report (best effort: the verdict matters most)."""
    verdict = error_verdict(change.run_id, reason, findings)
    verdict.report_url = links.report_url(settings, change.run_id)
    out = out or ArtifactDir(settings.artifacts_dir / change.run_id).ensure()
    try:
        write_outputs(verdict, {}, out, title=change.title or _title(change),
                      meta={"mode": change.mode, "run": change.run_id})
    except Exception:
        log.exception("could not write the error report of run %s", change.run_id)
        out.path("verdict.json").write_text(verdict.model_dump_json(indent=2), encoding="utf-8")
    return verdict
