"""Shared dependencies of the routers: the app context, 422 helpers (auth: diffie.api.auth)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

from diffie.api.auth import require_read
from diffie.app_context import AppContext


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]

# Bearer-token auth with scopes lives in diffie.api.auth; ``require_token`` is the read scope.
require_token = require_read


def invalid(where: str | tuple[str, ...], msg: str, type_: str = "value_error",
            **ctx: Any) -> RequestValidationError:
    """A 422 naming the field that is wrong (``where``: a body field or a full location), in
    FastAPI's usual error format; ``ctx`` adds details (file, line, field of a spec error)."""
    loc = ("body", where) if isinstance(where, str) else where
    error: dict[str, Any] = {"loc": loc, "msg": msg, "type": type_}
    if ctx:
        error["ctx"] = ctx
    return RequestValidationError([error])
