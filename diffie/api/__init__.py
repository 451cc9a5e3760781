"""The HTTP API: ``create_app(settings)`` → FastAPI (OpenAPI at /docs)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from diffie.api import ops, reports, runs, trace_viewer, webhooks
from diffie.api.auth import parse_tokens
from diffie.api.limits import BodySizeLimit
from diffie.api.mcp_http import mcp_route
from diffie.app_context import AppContext
from diffie.composition import build_context
from diffie.config import Settings
from diffie.git_source import is_url

DESCRIPTION = """Diffie verifies a code change in a real browser: base vs head, the same flows,
one structured verdict (`pass`, `changed`, `fail`, `error`) plus an HTML report.

Submit with `POST /v1/runs` (202 at once), then `GET /v1/runs/{id}/wait` (long-poll) or poll
`GET /v1/runs/{id}` until `done` or `error`. Coding agents: the MCP tools at `/mcp`
(streamable HTTP; a token with the `submit` scope).
When `DIFFIE_API_TOKENS` is set, `/v1` needs `Authorization: Bearer <token>` (scope `read` to
read, `submit` to submit); the report links in responses are signed and need no token."""

log = logging.getLogger(__name__)

OPEN_WARNING = ("THE DIFFIE API IS OPEN: DIFFIE_API_TOKENS is empty, so anyone who can reach "
                "this port can submit runs and read every run, report and artifact. Set "
                "DIFFIE_API_TOKENS (comma-separated; read:TOKEN, submit:TOKEN or TOKEN).")


def warn_hosts_apart(settings: Settings) -> None:
    """With an artifact store the API and the workers are on different hosts: a local
    repository path is checked here and read there, so both need it (a shared mount)."""
    local = [src for src in settings.repo_mode_sources if not is_url(src)]
    if settings.artifact_store and local:
        log.warning("DIFFIE_ARTIFACT_STORE is set (API and worker hosts apart) and "
                    "DIFFIE_REPO_MODE_SOURCES lists local directories (%s): the API checks a "
                    "repository there on its own disk and every worker host reads it on its "
                    "own, so mount them at the same path everywhere, or list URL prefixes "
                    "(workers clone them)", ", ".join(local))


def create_app(settings: Settings | None = None, *, context: AppContext | None = None) -> FastAPI:
    """The API. Builds (and on shutdown closes) its own context unless one is given."""
    own = context is None
    if context is None and settings is None:
        settings = Settings()
    current = context.settings if context is not None else settings
    assert current is not None
    if not parse_tokens(current.api_tokens, warn=True):       # ConfigError on a bad entry
        log.warning("%s", OPEN_WARNING)
    ctx = context or build_context(settings)
    warn_hosts_apart(ctx.settings)

    route, mcp = mcp_route(ctx)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with mcp.session_manager.run():
            yield
        if own:
            ctx.close()

    app = FastAPI(title="Diffie", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.ctx = ctx
    app.include_router(ops.router)
    app.include_router(runs.router)
    app.include_router(reports.router)
    app.include_router(reports.signed_router)
    app.include_router(trace_viewer.router)
    app.include_router(trace_viewer.read_router)
    app.include_router(trace_viewer.signed_router)
    app.include_router(webhooks.router)
    app.router.routes.append(route)                  # /mcp: the MCP tools over HTTP

    app.add_middleware(BodySizeLimit, max_bytes=ctx.settings.max_body_bytes)
    return app
