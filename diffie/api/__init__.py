"""The HTTP API: ``create_app(settings)`` → FastAPI (OpenAPI at /docs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from diffie.api import reports, runs, webhooks
from diffie.api.limits import BodySizeLimit
from diffie.app_context import AppContext, build_context
from diffie.config import Settings

DESCRIPTION = """Diffie verifies a code change in a real browser: base vs head, the same flows,
one structured verdict (`pass`, `changed`, `fail`, `error`) plus an HTML report.

Submit with `POST /v1/runs` (202 at once), poll `GET /v1/runs/{id}` until `done` or `error`.
When `DIFFIE_API_TOKENS` is set, `/v1` needs `Authorization: Bearer <token>`."""


def create_app(settings: Settings | None = None, *, context: AppContext | None = None) -> FastAPI:
    """The API. Builds (and on shutdown closes) its own context unless one is given."""
    own = context is None
    ctx = context or build_context(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if own:
            ctx.close()

    app = FastAPI(title="Diffie", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.ctx = ctx
    app.include_router(runs.router)
    app.include_router(reports.router)
    app.include_router(webhooks.router)

    @app.get("/health", tags=["health"], summary="Liveness: the API answers")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(BodySizeLimit, max_bytes=ctx.settings.max_body_bytes)
    return app
