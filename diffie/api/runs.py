"""``/v1/runs``: submit a change (202 at once), read a run's status and verdict; the schema."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import yaml
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from diffie import links as run_links
from diffie import run_store, uploads
from diffie.api.auth import require_read, require_submit
from diffie.api.deps import Ctx, invalid
from diffie.api.events import run_event_stream
from diffie.api.schemas import (
    ApproveOut,
    ApproveRequest,
    ArtifactOut,
    CancelRequest,
    ChangeOut,
    FindingsPage,
    Links,
    RunAccepted,
    RunOut,
    RunRequest,
)
from diffie.app_context import AppContext
from diffie.compact import CompactVerdict, compact, decode_cursor, encode_cursor
from diffie.config import Settings
from diffie.errors import InputError, SpecError
from diffie.git_source import is_url
from diffie.models import FINISHED, RUN_STATUSES, Run
from diffie.run_store import as_utc
from diffie.spec import parse_spec
from diffie.spec_limits import SpecLimits, data_excess
from diffie.submit import (
    approve_findings,
    cancel_run,
    check_local_repo_base,
    check_local_repo_change,
    snapshot,
)
from diffie.submit_policy import check_callback, check_repo_source, check_url_origins
from diffie.uploads import Upload

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["runs"])

URL_FIELDS = ("base_url", "head_url", "spec", "flows")
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", None) or yaml.SafeDumper
REPO_FIELDS = ("repo", "base", "head", "spec_path", "patch", "bundle")


def links(request: Request, settings: Settings, run_id: str) -> Links:
    """``self`` and ``artifacts`` are API URLs (bearer token); ``report`` is a signed link that
    works without a token, to hand to a person."""
    base = str(request.base_url).rstrip("/")
    return Links(self=run_links.api_url(settings, run_id, base=base),
                 report=run_links.report_url(settings, run_id, base=base),
                 artifacts=run_links.api_url(settings, run_id, "artifacts/", base=base))


def _spec_error(field: str, exc: SpecError) -> Exception:
    return invalid(field, str(exc), "spec_error", file=exc.file, line=exc.line,
                   field=exc.field, reason=exc.reason)


def _url_mode_spec(settings: Settings, body: RunRequest) -> str:
    for name in ("base_url", "head_url"):
        if getattr(body, name) is None:
            raise invalid(name, "Field required (URL mode needs base_url and head_url)", "missing")
    if body.spec is not None and body.flows is not None:
        raise invalid("flows", "give the flows either in spec or in flows, not both")
    if body.spec is None and body.flows is None:
        raise invalid("spec", "URL mode needs the flows: spec (a .diffie.yml text) or flows",
                      "missing")
    try:
        check_url_origins(settings, {"base_url": body.base_url, "head_url": body.head_url})
    except InputError as exc:
        raise invalid(exc.where, str(exc), exc.code, **exc.context) from None
    limits = SpecLimits.from_settings(settings)
    if isinstance(body.spec, str):
        text, field, file = body.spec, "spec", ".diffie.yml"
    else:
        data, field = (body.spec, "spec") if body.spec is not None else ({"flows": body.flows},
                                                                         "flows")
        excess = data_excess(data, limits)
        if excess is not None:             # before the (slow) dump of an oversized object
            raise _spec_error(field, SpecError(excess.message, file=field, field=excess.field))
        text, file = yaml.dump(data, Dumper=_Dumper, sort_keys=False), field
    try:
        parse_spec(text, file=file, limits=limits, url_mode=True)
    except SpecError as exc:
        raise _spec_error(field, exc) from None
    return text


def _check_repo_mode(settings: Settings, body: RunRequest) -> tuple[str, Upload | None]:
    """The spec's path and the uploaded head, if any (checked; an upload's spec is checked
    by the worker once it has applied it)."""
    try:
        upload = uploads.from_request(patch=body.patch, bundle=body.bundle,
                                      max_bytes=settings.max_upload_bytes)
    except InputError as exc:
        raise invalid(exc.where, str(exc), exc.code) from None
    if upload is not None and body.head:
        raise invalid("head", f"the {upload.format} is the head: leave out head")
    for name in ("repo", "base") + (() if upload else ("head",)):
        if not getattr(body, name):
            raise invalid(name, "Field required (repo mode needs repo, base and head, or a "
                          "patch or bundle instead of head)", "missing")
    assert body.repo and body.base
    try:
        check_repo_source(settings, body.repo)
    except InputError as exc:
        raise invalid(exc.where, str(exc), exc.code, **exc.context) from None
    spec_path = body.spec_path or ".diffie.yml"
    if is_url(body.repo):
        return spec_path, upload            # fetched by the worker; validated there
    try:
        if upload is None:
            assert body.head
            check_local_repo_change(settings, repo=body.repo, base=body.base, head=body.head,
                                    spec_path=spec_path)
        else:
            check_local_repo_base(repo=body.repo, base=body.base)
    except InputError as exc:
        raise invalid(exc.where, str(exc), exc.code, **exc.context) from None
    except SpecError as exc:
        raise _spec_error("spec_path", exc) from None
    return spec_path, upload


def enqueue_or_fail(ctx: AppContext, run_id: str) -> None:
    """Put the run on the queue; if the broker is unreachable the run ends ``error`` (503)."""
    try:
        ctx.enqueue(run_id)
    except Exception as exc:
        log.exception("enqueue of run %s failed", run_id)
        reason = f"could not reach the queue ({type(exc).__name__}: {exc})"
        run_store.abandon(ctx.db, run_id, reason)
        raise HTTPException(503, f"run {run_id} recorded but not queued: {reason}") from None
    ctx.events.queued(run_id)


@router.post("/runs", status_code=202, response_model=RunAccepted,
             dependencies=[Depends(require_submit)],
             summary="Submit a change for verification (answers at once)")
def submit_run(body: RunRequest, request: Request, response: Response,
               ctx: Ctx) -> RunAccepted:
    given = {name for name in URL_FIELDS + REPO_FIELDS if getattr(body, name) is not None}
    url_mode = bool(given & set(URL_FIELDS))
    if url_mode and given & set(REPO_FIELDS):
        raise invalid("repo", "give base_url/head_url (URL mode) or repo/base/head (repo mode), "
                      "not both")
    if not given:
        raise invalid(("body",), "give base_url, head_url and spec (URL mode) or repo, base and "
                      "head (repo mode)", "missing")
    try:
        check_callback(ctx.settings, body.callback_url)
    except InputError as exc:
        raise invalid(exc.where, str(exc), exc.code, **exc.context) from None
    if url_mode:
        spec_text = _url_mode_spec(ctx.settings, body)
        assert body.base_url and body.head_url
        run_id = run_store.submit_url(ctx.db, base_url=body.base_url, head_url=body.head_url,
                                      spec_text=spec_text, title=body.title,
                                      callback_url=body.callback_url)
    else:
        spec_path, upload = _check_repo_mode(ctx.settings, body)
        head = upload.label if upload else body.head
        assert body.repo and body.base and head
        run_id = run_store.submit_repo(ctx.db, repo=body.repo, base=body.base, head=head,
                                       spec_path=spec_path, title=body.title, upload=upload,
                                       callback_url=body.callback_url)
    enqueue_or_fail(ctx, run_id)
    out = RunAccepted(id=run_id, links=links(request, ctx.settings, run_id))
    response.headers["Location"] = out.links.self
    return out


def run_out(request: Request, settings: Settings, run: Run) -> RunOut:
    c = run.change
    base = str(request.base_url).rstrip("/")
    verdict = run.verdict
    if verdict is not None:                  # the stored link may be old: sign it afresh
        verdict = {**verdict, "report_url": run_links.fresh_report_url(
            settings, run.id, verdict.get("report_url"))}
    return RunOut(
        id=run.id, status=run.status, phase=run.phase, verdict_status=run.verdict_status,
        verdict=verdict, reason=run.reason, attempts=run.attempts, worker=run.worker,
        created_at=as_utc(run.created_at) or run.created_at, started_at=as_utc(run.started_at),
        finished_at=as_utc(run.finished_at),
        change=ChangeOut(mode=c.mode, base_url=c.base_url, head_url=c.head_url, repo=c.repo,
                         base=c.base_rev, head=c.head_rev,
                         spec_path=c.spec_path if c.mode != "url" else None, title=c.title,
                         pr_number=c.pr_number, gh_owner=c.gh_owner, gh_repo=c.gh_repo),
        links=links(request, settings, run.id),
        artifacts=[ArtifactOut(name=a.name, media_type=a.media_type, size=a.size,
                               url=run_links.artifact_url(settings, run.id, a.name, base=base))
                   for a in sorted(run.artifacts, key=lambda a: a.name)])


VIEW = Query(default="full", pattern="^(full|compact)$",
             description="full: the run with its whole verdict; compact: the verdict an agent "
                         "reads (findings grouped by cause, bounded, paged by cursor)")
CURSOR = Query(default=None, max_length=100, description="compact view: next_cursor of the "
                                                         "previous page")


def get_run(run_id: str, request: Request, ctx: Ctx) -> RunOut:
    with ctx.db.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise HTTPException(404, f"no run {run_id}")
        return run_out(request, ctx.settings, run)


def compact_run(run_id: str, ctx: AppContext, cursor: str | None) -> CompactVerdict:
    snap = snapshot(ctx, run_id)
    if snap is None:
        raise HTTPException(404, f"no run {run_id}")
    report = (snap.get("verdict") or {}).get("report_url")
    try:
        return compact(snap, report=report, cursor=cursor)
    except ValueError as exc:
        raise invalid(("query", "cursor"), str(exc), "bad_cursor") from None


def viewed(run_id: str, request: Request, ctx: AppContext, view: str,
           cursor: str | None) -> RunOut | CompactVerdict:
    return compact_run(run_id, ctx, cursor) if view == "compact" else \
        get_run(run_id, request, ctx)


@router.get("/runs/{run_id}", response_model=RunOut | CompactVerdict,
            dependencies=[Depends(require_read)], summary="A run's status and verdict")
def read_run(run_id: str, request: Request, ctx: Ctx, view: str = VIEW,
             cursor: str | None = CURSOR) -> RunOut | CompactVerdict:
    return viewed(run_id, request, ctx, view, cursor)


@router.get("/runs/{run_id}/findings", response_model=FindingsPage,
            dependencies=[Depends(require_read)],
            summary="A run's findings in full, a page at a time, optionally of one kind")
def list_findings(run_id: str, ctx: Ctx,
                  cursor: str | None = CURSOR,
                  limit: int = Query(default=20, ge=1, le=100),
                  kind: str | None = Query(default=None, max_length=40)) -> FindingsPage:
    snap = snapshot(ctx, run_id)
    if snap is None:
        raise HTTPException(404, f"no run {run_id}")
    findings = [f for f in (snap.get("verdict") or {}).get("findings") or []
                if kind is None or f.get("kind") == kind]
    try:
        offset = decode_cursor(cursor)
    except ValueError as exc:
        raise invalid(("query", "cursor"), str(exc), "bad_cursor") from None
    end = offset + limit
    return FindingsPage(run_id=run_id, total=len(findings), findings=findings[offset:end],
                        next_cursor=encode_cursor(end) if end < len(findings) else None)


WAIT_MAX_S = 60.0
WAIT_POLL_S = 0.5


@router.get("/runs/{run_id}/wait", response_model=RunOut | CompactVerdict,
            dependencies=[Depends(require_read)],
            summary="Long-poll: the run once it has finished, or as it is after timeout_s")
async def wait_run(run_id: str, request: Request, ctx: Ctx,
                   timeout_s: float = Query(default=30.0, ge=0.0, le=WAIT_MAX_S),
                   view: str = VIEW) -> RunOut | CompactVerdict:
    """Answers as soon as the run is done, error or cancelled, else after ``timeout_s``
    (at most 60, so clients with 60-100 s request timeouts survive) with the run as it is:
    call again while ``status`` is waiting, queued or running."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = await run_in_threadpool(get_run, run_id, request, ctx)
        if out.status in FINISHED or time.monotonic() >= deadline:
            return out if view == "full" else \
                await run_in_threadpool(compact_run, run_id, ctx, None)
        await asyncio.sleep(min(WAIT_POLL_S, max(0.0, deadline - time.monotonic())))


@router.get("/runs/{run_id}/events", dependencies=[Depends(require_read)],
            response_class=StreamingResponse,
            summary="Server-sent events: the run's progress lines as they happen, its status "
                    "changes, and its compact verdict when it finishes (then the stream ends)",
            responses={200: {"content": {"text/event-stream": {}}}})
async def run_events(run_id: str, ctx: Ctx,
                     last_event_id: str | None = Header(default=None, max_length=20)
                     ) -> StreamingResponse:
    if await run_in_threadpool(snapshot, ctx, run_id) is None:
        raise HTTPException(404, f"no run {run_id}")
    try:
        seen = max(0, int(last_event_id)) if last_event_id else 0
    except ValueError:
        raise invalid(("header", "last-event-id"), "Last-Event-ID is the number of a "
                      "progress event this stream sent", "bad_event_id") from None
    stream = run_event_stream(ctx, run_id, seen=seen)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.post("/runs/{run_id}/cancel", response_model=RunOut,
             dependencies=[Depends(require_submit)],
             summary="Cancel a waiting, queued or running run (409 once it has finished)")
def cancel_run_request(run_id: str, request: Request, ctx: Ctx,
               body: CancelRequest | None = None) -> RunOut:
    reason = (body.reason if body and body.reason else None) or "cancelled through the API"
    try:
        cancel_run(ctx, run_id, reason)        # publishers (a GitHub check run) say it too
    except InputError as exc:
        raise HTTPException(404 if exc.code == "not_found" else 409, str(exc)) from None
    return get_run(run_id, request, ctx)


@router.post("/runs/{run_id}/approve", response_model=ApproveOut,
             dependencies=[Depends(require_submit)],
             summary="Approve visual findings of a finished run; later runs of the same pull "
                     "request, repository or URL pair showing the same change report them "
                     "approved")
def approve_run(run_id: str, ctx: Ctx, body: ApproveRequest | None = None) -> ApproveOut:
    body = body or ApproveRequest()
    try:
        done = approve_findings(ctx, run_id, body.findings, by=body.by, note=body.note)
    except InputError as exc:
        if exc.where == "findings":
            raise invalid(("body", "findings"), str(exc), "unknown_finding") from None
        raise HTTPException(404 if exc.code == "not_found" else 409, str(exc)) from None
    return ApproveOut(run_id=run_id, approved=done.approved, whole_run=done.whole_run)


@router.get("/runs", response_model=list[RunOut], dependencies=[Depends(require_read)],
            summary="Recent runs, newest first")
def list_runs(request: Request, ctx: Ctx,
              status: str | None = Query(default=None, max_length=16),
              limit: int = Query(default=20, ge=1, le=200)) -> list[RunOut]:
    with ctx.db.session() as s:
        query = select(Run).order_by(Run.created_at.desc()).limit(limit)
        if status and status not in RUN_STATUSES:
            raise invalid(("query", "status"), f"unknown status {status!r}: one of "
                          f"{', '.join(RUN_STATUSES)}", "unknown_status")
        if status:
            query = query.where(Run.status == status)
        return [run_out(request, ctx.settings, r) for r in s.scalars(query)]


@router.get("/schema/verdict.json", summary="The verdict's JSON Schema", tags=["schema"],
            dependencies=[Depends(require_read)])
def verdict_schema_json() -> JSONResponse:
    from diffie.render.schema import verdict_schema

    schema: dict[str, Any] = verdict_schema()
    return JSONResponse(schema)
