"""Submitting a run and waiting for it, as the CLI and the corpus benchmark do (validate →
record → enqueue → wait). Validation happens here, before anything is queued, so a bad input
is an error the user sees at once with where it is (file, line, field), never a queued run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffie import approvals, git_source, links, run_store
from diffie.app_context import AppContext
from diffie.approvals import Approved
from diffie.config import Settings
from diffie.errors import DiffieError, InputError, RunTimeout, SourceError, SpecError
from diffie.models import FINISHED, Run
from diffie.progress import ProgressReader
from diffie.spec import Spec, parse_spec
from diffie.spec_limits import SpecLimits
from diffie.uploads import Upload
from diffie.url_mode import strict_origin

Say = Callable[[str], None]


def submit_url(ctx: AppContext, *, base_url: str, head_url: str, spec_path: str,
               title: str | None = None) -> str:
    """Record a URL-mode run (base and head already deployed); returns its id."""
    for flag, url in (("--base-url", base_url), ("--head-url", head_url)):
        try:
            strict_origin(url)
        except ValueError as exc:
            raise DiffieError(f"{flag} {url!r}: {exc}") from None
    path = Path(spec_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read the spec: {exc.strerror}", file=str(path)) from None
    return submit_url_spec(ctx, base_url=base_url, head_url=head_url, spec_text=text,
                           file=str(path), title=title)


def submit_url_spec(ctx: AppContext, *, base_url: str, head_url: str, spec_text: str,
                    file: str = ".diffie.yml", title: str | None = None) -> str:
    """:func:`submit_url` with the spec's text (``file`` names it in errors)."""
    parse_spec(spec_text, file=file, limits=SpecLimits.from_settings(ctx.settings),
               url_mode=True)
    return run_store.submit_url(ctx.db, base_url=base_url, head_url=head_url,
                                spec_text=spec_text, title=title)


def check_local_repo_base(*, repo: str, base: str) -> Path:
    """A local repository and its base revision exist (for uploaded work as the head)."""
    try:
        path = git_source.local_repo(repo)
    except SourceError as exc:
        raise InputError("repo", str(exc)) from None
    try:
        git_source.resolve_rev(path, base)
    except SourceError as exc:
        raise InputError("base", str(exc)) from None
    return path


def check_local_repo_change(settings: Settings, *, repo: str, base: str, head: str,
                            spec_path: str) -> tuple[Path, Spec]:
    """A repo-mode change of a repository on this machine, checked before anything is queued:
    the repository and both revisions exist, the head revision has a spec with a ``sandbox``
    section. Returns the repository's path and the head's spec; raises :class:`InputError`
    naming the wrong field, or :class:`SpecError` (file, line, field). (A repository URL is
    fetched and checked by the worker.)"""
    path = check_local_repo_base(repo=repo, base=base)
    try:
        git_source.resolve_rev(path, head)
    except SourceError as exc:
        raise InputError("head", str(exc)) from None
    try:
        text = git_source.read_file(path, head, spec_path)
    except SourceError as exc:
        raise InputError("spec_path", str(exc)) from None
    if text is None:
        raise InputError("spec_path", f"{spec_path} not found in {repo} at {head}: the head "
                         "revision needs a Diffie spec", "spec_error", file=spec_path)
    spec = parse_spec(text, file=spec_path, limits=SpecLimits.from_settings(settings))
    if spec.sandbox is None:
        raise InputError("spec_path", f"{spec_path} has no 'sandbox' section: repo mode deploys "
                         "the change in a VM (image, deploy commands, app port)", "spec_error",
                         file=spec_path, field="sandbox")
    return path, spec


def submit_repo(ctx: AppContext, *, repo: str, base: str, head: str | None,
                spec_path: str = ".diffie.yml", title: str | None = None,
                upload: Upload | None = None) -> str:
    """Record a repo-mode run of a local repository (checked first) or a clone URL (checked
    by the worker); returns its id. With ``upload`` (:mod:`diffie.uploads`) the head is base
    + it and ``head`` must be None."""
    if upload is not None:
        if head is not None:
            raise InputError("head", f"the {upload.format} is the head: leave out head")
        head = upload.label
    elif head is None:
        raise InputError("head", "repo mode needs a head revision (or a patch)")
    if git_source.is_url(repo):
        where = repo                        # fetched and checked by the worker
    elif upload is not None:
        where = str(check_local_repo_base(repo=repo, base=base))
    else:
        where = str(check_local_repo_change(ctx.settings, repo=repo, base=base, head=head,
                                            spec_path=spec_path)[0])
    return run_store.submit_repo(ctx.db, repo=where, base=base, head=head,
                                 spec_path=spec_path, title=title, upload=upload)


def snapshot(ctx: AppContext, run_id: str) -> dict[str, Any] | None:
    """The run as the CLI prints it (None: no such run)."""
    with ctx.db.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            return None
        verdict = run.verdict
        if verdict is not None:              # the stored link may be old: sign it afresh
            verdict = {**verdict, "report_url": links.fresh_report_url(
                ctx.settings, run.id, verdict.get("report_url"))}
        return {"id": run.id, "status": run.status, "phase": run.phase, "reason": run.reason,
                "verdict_status": run.verdict_status, "verdict": verdict,
                "attempts": run.attempts, "mode": run.change.mode,
                "report": str(ctx.settings.artifacts_dir / run.id / "index.html")}


def wait_for(ctx: AppContext, run_id: str, *, timeout_s: float, say: Say) -> dict[str, Any]:
    """Poll the run until it finishes, handing its progress lines (:mod:`diffie.progress`,
    from whichever host runs it) to ``say``, and its status when there are none."""
    deadline = time.monotonic() + timeout_s
    lines = ProgressReader(ctx.db, run_id)
    last = ""
    while True:
        snap = snapshot(ctx, run_id)
        if snap is None:
            raise DiffieError(f"run {run_id} disappeared while it was awaited")
        for _, text in lines.read():
            say(text)
        line = f"{snap['status']}: {snap['phase']}"
        if line != last and (lines.count == 0 or snap["status"] != "running"):
            say(f"run {run_id[:8]} {line}")
        last = line
        if snap["status"] in FINISHED:
            return snap
        if time.monotonic() > deadline:
            raise RunTimeout(f"run {run_id} did not finish within {timeout_s:.0f} s "
                              f"(it is {snap['status']}: {snap['phase']})")
        time.sleep(0.5)


def cancel_run(ctx: AppContext, run_id: str, reason: str) -> None:
    """Cancel a waiting, queued or running run (a running one stops at its next phase);
    publishers hear ``finished``. :class:`InputError` (``run_id``) when there is no such run
    (code ``not_found``) or it has already finished."""
    with ctx.db.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise InputError("run_id", f"no run {run_id}", code="not_found")
        if not run_store.cancel_runs(s, [run_id], reason[:500]):
            raise InputError("run_id", f"run {run_id} has already finished ({run.status})")
    ctx.events.finished(run_id)


def approve_findings(ctx: AppContext, run_id: str, finding_ids: list[str] | None, *, by: str,
                     note: str | None = None) -> Approved:
    """:func:`diffie.approvals.approve` for the CLI and the MCP server: nothing is recorded
    when an id is unknown or names an error (:class:`InputError` ``findings``); publishers
    hear ``approved``."""
    with ctx.db.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise InputError("run_id", f"no run {run_id}", code="not_found")
        if run.verdict is None:
            raise InputError("run_id", f"run {run_id} has no verdict yet ({run.status})")
        done = approvals.approve(s, run, finding_ids, by=by, note=note)
        if done.unknown or done.not_visual:
            s.rollback()
            what = ([f"no such finding: {', '.join(done.unknown[:5])}"] if done.unknown else []) \
                + ([f"not a visual change (fix it instead): {', '.join(done.not_visual[:5])}"]
                   if done.not_visual else [])
            raise InputError("findings", "; ".join(what))
    if done.approved:
        ctx.events.approved(run_id)
    return done
