"""Playwright's trace viewer, served by Diffie (it ships inside the ``playwright`` package: no
internet, no ``npx``), opening a run's ``trace.zip`` in one click from the report.

- ``GET /v1/trace-viewer/{file}``: the viewer's static files (public: code of the installed
  Playwright, nothing of any run);
- ``GET /v1/runs/{id}/trace/{name}`` (bearer token), and from the report's own folder
  ``…/report/trace/{name}`` (token or signed report link): a redirect to the viewer with the
  trace given as a freshly signed artifact link, so the viewer (which cannot send a bearer
  token) fetches it from this origin.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from urllib.parse import quote

import playwright
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse

from diffie import links
from diffie.api.auth import require_read
from diffie.api.deps import Ctx
from diffie.api.reports import check_link, find_artifact

VIEWER_DIR = Path(playwright.__file__).resolve().parent / "driver" / "package" / "lib" / "vite" \
    / "traceViewer"
PREFIX = "/v1/trace-viewer/"
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Content-Security-Policy": "frame-ancestors 'self'; base-uri 'self'; "
                                      "form-action 'none'; object-src 'none'"}

router = APIRouter(prefix="/v1", tags=["reports"])
read_router = APIRouter(prefix="/v1", tags=["reports"], dependencies=[Depends(require_read)])
signed_router = APIRouter(prefix="/v1/runs/{run_id}/signed/{expires}/{sig}", tags=["reports"])


@router.get("/trace-viewer/{path:path}", include_in_schema=False)
def viewer_file(path: str) -> FileResponse:
    root = VIEWER_DIR.resolve()
    target = (root / (path or "index.html")).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(404, "not a file of the trace viewer")
    media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix == ".webmanifest":
        media_type = "application/manifest+json"
    return FileResponse(target, media_type=media_type, headers=HEADERS)


def _to_viewer(request: Request, ctx: Ctx, run_id: str, name: str) -> RedirectResponse:
    if not name.endswith(".zip"):
        raise HTTPException(404, f"{name!r} is not a trace")
    find_artifact(ctx, run_id, name)                      # 404 unless the run has it
    if not VIEWER_DIR.is_dir():
        raise HTTPException(404, "this Playwright installation has no trace viewer")
    base = str(request.base_url).rstrip("/")
    trace = links.artifact_url(ctx.settings, run_id, name, base=base)
    return RedirectResponse(f"{PREFIX}index.html?trace={quote(trace, safe='')}", 302)


@read_router.get("/runs/{run_id}/trace/{name}", summary="Open a trace of the run in the trace "
                 "viewer (a redirect)", response_class=RedirectResponse)
def open_trace(run_id: str, name: str, request: Request, ctx: Ctx) -> RedirectResponse:
    return _to_viewer(request, ctx, run_id, name)


@read_router.get("/runs/{run_id}/report/trace/{name}", include_in_schema=False)
def open_trace_from_report(run_id: str, name: str, request: Request,
                           ctx: Ctx) -> RedirectResponse:
    return _to_viewer(request, ctx, run_id, name)


@signed_router.get("/report/trace/{name}", include_in_schema=False)
def signed_open_trace(run_id: str, expires: str, sig: str, name: str, request: Request,
                      ctx: Ctx) -> RedirectResponse:
    check_link(ctx, run_id, links.REPORT, expires, sig)
    return _to_viewer(request, ctx, run_id, name)
