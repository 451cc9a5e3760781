"""The MCP server (:mod:`diffie.mcp_server`) over streamable HTTP at ``/mcp`` in the API: the
same tools as ``diffie mcp``, behind the API's bearer tokens (a token with the ``submit``
scope: the tools submit and cancel runs), with progress notifications (SSE responses, not
``json_response``). The API's own worker (``diffie serve``) or the fleet's take the runs.

What may be verified is limited as in the API (:mod:`diffie.submit_policy`: allowed URL-mode
origins, allowed repository places; no ``worktree``, which reads the server's disk).

DNS-rebinding protection (a Host check) is off: like the rest of the API, ``/mcp`` relies on
the tokens, and with none configured the API is open and says so at start."""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from diffie.api.auth import parse_tokens, scopes_of
from diffie.app_context import AppContext
from diffie.mcp_server import DiffieTools, build_server

PATH = "/mcp"


class TokenGate:
    """ASGI wrapper: 401 without a valid bearer token, 403 without the ``submit`` scope (no
    tokens configured: open, like the rest of the API)."""

    def __init__(self, app: ASGIApp, ctx: AppContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tokens = parse_tokens(self.ctx.settings.api_tokens)
        if scope["type"] == "http" and tokens:
            header = dict(scope.get("headers") or []).get(b"authorization", b"").decode(
                "latin-1")
            given = header[7:].strip() if header[:7].lower() == "bearer " else ""
            scopes = scopes_of(given, tokens) if given else None
            if scopes is None:
                await _deny(send, 401, "this endpoint needs a bearer token (Authorization: "
                                       "Bearer <token>)" if not given else
                                       "missing or invalid bearer token")
                return
            if "submit" not in scopes:
                await _deny(send, 403, "MCP needs a token with the 'submit' scope")
                return
        await self.app(scope, receive, send)


async def _deny(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json"),
                                          (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def mcp_route(ctx: AppContext) -> tuple[Route, MCPServer]:
    """The ``/mcp`` route for the API, and the server (its ``session_manager.run()`` must be
    running while the API serves: the API's lifespan enters it)."""
    server = build_server(DiffieTools(ctx, embedded_worker=False, remote=True))
    asgi = server.streamable_http_app(
        streamable_http_path=PATH,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    endpoint: Any = next(r for r in asgi.routes if getattr(r, "path", None) == PATH)
    return Route(PATH, endpoint=TokenGate(endpoint.endpoint, ctx)), server
