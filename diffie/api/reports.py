"""A run's HTML report and its artifacts (flat, Diffie-generated names only).

Two ways in: with a bearer token of scope ``read`` (``/v1/runs/{id}/report/``, ...), or by a
signed, expiring link (``/v1/runs/{id}/signed/{expires}/{sig}/report/``, see diffie.links),
which needs no token: the links in check runs, PR comments and CLI/API output.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse, RedirectResponse
from sqlalchemy import select

from diffie import links
from diffie.api.auth import require_read
from diffie.api.deps import Ctx
from diffie.app_context import AppContext
from diffie.artifact_store import StoreError, cache_locally
from diffie.artifacts import NAME_RE, ArtifactDir
from diffie.models import Artifact, Run
from diffie.render.html import report_csp

router = APIRouter(prefix="/v1", tags=["reports"], dependencies=[Depends(require_read)])
signed_router = APIRouter(prefix="/v1/runs/{run_id}/signed/{expires}/{sig}", tags=["reports"])

# The report runs one script of its own (allowed by its hash) and loads nothing from elsewhere;
# app text in it is escaped, and this policy is the second line of defence.
REPORT_CSP = report_csp(meta=False)
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": REPORT_CSP,
                "Cache-Control": "no-cache", "Referrer-Policy": "no-referrer"}


def _artifact(ctx: AppContext, run_id: str, name: str) -> FileResponse:
    path, media_type = find_artifact(ctx, run_id, name)
    headers = dict(SAFE_HEADERS)
    if media_type.split(";")[0] in ("application/zip", "application/octet-stream"):
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return FileResponse(path, media_type=media_type, headers=headers)


def find_artifact(ctx: AppContext, run_id: str, name: str) -> tuple[Path, str]:
    """The file and media type of one artifact of a run; 404 naming what is missing."""
    if not NAME_RE.match(name) or ".." in name:
        raise HTTPException(404, f"no artifact {name!r}")
    with ctx.db.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise HTTPException(404, f"no run {run_id}")
        row = s.scalars(select(Artifact).where(Artifact.run_id == run.id,
                                               Artifact.name == name)).first()
        if row is None:
            raise HTTPException(404, f"run {run_id} has no artifact {name!r}"
                                + ("" if run.status in ("done", "error") else
                                   f" (yet: the run is {run.status})"))
        media_type = row.media_type
        path = ArtifactDir(ctx.settings.artifacts_dir / run.id).path(name)
    if not path.is_file() and ctx.artifact_store is not None:
        try:
            cache_locally(ctx.artifact_store, path.parent, run_id, name)
        except StoreError as exc:
            raise HTTPException(503, str(exc)) from None
    if not path.is_file():
        raise HTTPException(404, f"artifact {name!r} of run {run_id} is missing "
                            + ("from the artifact store" if ctx.artifact_store else "on disk"))
    return path, media_type


@router.get("/runs/{run_id}/report", summary="The HTML report", response_class=FileResponse)
def report(run_id: str, ctx: Ctx) -> FileResponse:
    return _artifact(ctx, run_id, "index.html")


@router.get("/runs/{run_id}/report/", include_in_schema=False)
def report_dir(run_id: str, ctx: Ctx) -> FileResponse:
    return _artifact(ctx, run_id, "index.html")


@router.get("/runs/{run_id}/report/{name}", summary="A file the report links to",
            response_class=FileResponse)
def report_file(run_id: str, name: str, ctx: Ctx) -> FileResponse:
    return _artifact(ctx, run_id, name)


@router.get("/runs/{run_id}/artifacts/{name}", summary="One artifact of a run",
            response_class=FileResponse)
def artifact(run_id: str, name: str, ctx: Ctx) -> FileResponse:
    return _artifact(ctx, run_id, name)


@router.get("/runs/{run_id}/{name}", include_in_schema=False)
def report_sibling(run_id: str, name: str, ctx: Ctx) -> FileResponse:
    """The report links its images by relative name: from ``/v1/runs/{id}/report`` they resolve
    here. Only artifact names (which always have an extension) are served."""
    if "." not in name:
        raise HTTPException(404, "not found")
    return _artifact(ctx, run_id, name)


# --- signed links (no token) --------------------------------------------------------------------

def check_link(ctx: AppContext, run_id: str, granted: str, expires: str, sig: str) -> None:
    try:
        if not expires.isascii() or not expires.isdigit() or len(expires) > 12:
            raise links.LinkProblem("this link is not valid: its expiry is not a time")
        links.check(ctx.settings, run_id, granted, int(expires), sig)
    except links.LinkProblem as exc:
        raise HTTPException(403, str(exc)) from None


@signed_router.get("/report", include_in_schema=False)
def signed_report_redirect(run_id: str, expires: str, sig: str, ctx: Ctx) -> RedirectResponse:
    """To ``…/report/`` (relative, so it holds behind a proxy): the report's relative links
    resolve under the signed prefix from there."""
    check_link(ctx, run_id, links.REPORT, expires, sig)
    return RedirectResponse("report/", 307)


@signed_router.get("/report/", summary="The HTML report, by a signed link (no token)",
                   response_class=FileResponse)
def signed_report(run_id: str, expires: str, sig: str, ctx: Ctx) -> FileResponse:
    check_link(ctx, run_id, links.REPORT, expires, sig)
    return _artifact(ctx, run_id, "index.html")


@signed_router.get("/report/{name}", summary="A file the report links to, by a signed link",
                   response_class=FileResponse)
def signed_report_file(run_id: str, expires: str, sig: str, name: str, ctx: Ctx) -> FileResponse:
    check_link(ctx, run_id, links.REPORT, expires, sig)
    return _artifact(ctx, run_id, name)


@signed_router.get("/artifacts/{name}", summary="One artifact, by a signed link (no token)",
                   response_class=FileResponse)
def signed_artifact(run_id: str, expires: str, sig: str, name: str, ctx: Ctx) -> FileResponse:
    check_link(ctx, run_id, f"artifacts/{name}", expires, sig)
    return _artifact(ctx, run_id, name)
