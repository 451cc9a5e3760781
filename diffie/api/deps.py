"""Shared dependencies of the routers: the app context, bearer-token auth, 422 helpers."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from diffie.app_context import AppContext

_bearer = HTTPBearer(auto_error=False, description="One of DIFFIE_API_TOKENS (when set).")


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def require_token(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None,
                                         Depends(_bearer)]) -> None:
    """401 unless the request carries one of the configured tokens (no tokens: open API)."""
    tokens = get_ctx(request).settings.api_tokens
    if not tokens:
        return
    given = credentials.credentials.encode() if credentials else b""
    ok = False
    for token in tokens:                     # compare against every token: constant time overall
        ok |= hmac.compare_digest(given, token.encode())
    if not ok:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "missing or invalid bearer token" if credentials else
                            "this API needs a bearer token (Authorization: Bearer <token>)",
                            headers={"WWW-Authenticate": "Bearer"})


def invalid(where: str | tuple[str, ...], msg: str, type_: str = "value_error",
            **ctx: Any) -> RequestValidationError:
    """A 422 naming the field that is wrong (``where``: a body field or a full location), in
    FastAPI's usual error format; ``ctx`` adds details (file, line, field of a spec error)."""
    loc = ("body", where) if isinstance(where, str) else where
    error: dict[str, Any] = {"loc": loc, "msg": msg, "type": type_}
    if ctx:
        error["ctx"] = ctx
    return RequestValidationError([error])
