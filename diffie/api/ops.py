"""Operations endpoints: ``/health`` (liveness: the process answers), ``/ready`` (readiness:
database, broker, a live worker; :mod:`diffie.health`) and ``/metrics`` (Prometheus;
:mod:`diffie.metrics`).

``/health`` and ``/ready`` need no token (load balancers and probes call them); without a
``read`` token (when tokens are on) ``/ready`` says only which checks passed, not the hosts,
addresses and errors behind them. ``/metrics`` needs the ``read`` scope when tokens are on
(Prometheus: ``authorization: {credentials: TOKEN}`` in the scrape config).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from diffie import health, metrics
from diffie.api.auth import allows, optional_credentials, require_read
from diffie.api.deps import get_ctx
from diffie.app_context import AppContext

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness: the API process answers (checks nothing else)")
def health_route() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: database, broker and a live worker (503 when not)",
            responses={503: {"description": "a check that matters failed (see checks)"}})
async def ready(ctx: Annotated[AppContext, Depends(get_ctx)],
                token: Annotated[str | None, Depends(optional_credentials)]) -> JSONResponse:
    result = await run_in_threadpool(health.readiness, ctx)
    body: dict[str, Any] = result.as_dict()
    if not allows(ctx.settings.api_tokens, token, "read"):
        body = {"status": body["status"],
                "checks": [{"name": c.name, "ok": c.ok, "fatal": c.fatal}
                           for c in result.checks]}
    return JSONResponse(body, status_code=200 if result.ready else 503)


@router.get("/metrics", summary="Prometheus metrics of the deployment (scope read)",
            dependencies=[Depends(require_read)], response_class=Response)
async def metrics_route(ctx: Annotated[AppContext, Depends(get_ctx)]) -> Response:
    body = await run_in_threadpool(metrics.render, ctx)
    return Response(body, media_type=metrics.CONTENT_TYPE)
