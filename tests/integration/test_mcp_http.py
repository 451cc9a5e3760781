"""The MCP tools over streamable HTTP at /mcp of a real ``diffie serve`` (API + its worker),
driven by the ``mcp`` package's own HTTP client: the API's tokens guard it (401 without one,
403 for a read-only one), progress notifications arrive, and a URL-mode change is verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.conftest import PAGE, Site
from tests.integration.test_mcp_stdio import text, verify
from tests.integration.test_queue_cli import SPEC, diffie_env, served
from tests.paths import REPO_ROOT


async def _agent(url: str, token: str, base_url: str, head_url: str) -> dict[str, Any]:
    seen: dict[str, Any] = {"progress": []}

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen["progress"].append(progress)

    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http, \
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        refused = {}
        for name, args in (
                ("origin", {"base_url": "http://127.0.0.1:6379", "head_url": head_url,
                            "spec": SPEC}),
                ("worktree", {"repo": str(REPO_ROOT), "worktree": True}),
                ("repo", {"repo": str(REPO_ROOT), "base": "HEAD~1", "head": "HEAD"})):
            got = await session.call_tool("submit", args)
            refused[name] = (got.is_error, text(got))
        seen["refused"] = refused
        seen["wait"] = await verify(session, base_url, head_url, on_progress, spec=SPEC)
    return seen


def test_mcp_over_http_behind_the_api_tokens(tmp_path: Path) -> None:
    with Site({"/": PAGE % '<button id="buy">Buy</button>'}) as base, \
            Site({"/": PAGE % ""}) as head:
        env = diffie_env(tmp_path / "data")
        env["DIFFIE_API_TOKENS"] = "read:r3ader,subm1tter"
        env["DIFFIE_URL_MODE_ORIGINS"] = f"{base.url},{head.url}"
        with served(tmp_path, env) as url:
            hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
            assert httpx.post(f"{url}/mcp", json=hello).status_code == 401
            assert httpx.post(f"{url}/mcp", json=hello,
                              headers={"Authorization": "Bearer r3ader"}).status_code == 403
            assert httpx.post(f"{url}/mcp", json=hello,
                              headers={"Authorization": "Bearer nope"}).status_code == 401
            seen = anyio.run(_agent, url, "subm1tter", base.url, head.url)
    refused = seen["refused"]              # the operator's limits hold over MCP as in the API
    assert refused["origin"][0] and "not allowed for URL mode" in refused["origin"][1]
    assert refused["worktree"][0] and "send the work as a patch" in refused["worktree"][1]
    assert refused["repo"][0] and "repo mode is off" in refused["repo"][1]
    wait = seen["wait"]
    assert wait["finished"] and wait["result"]["status"] == "fail", wait
    assert wait["result"]["groups"][0]["kind"] == "step_failed"
    assert seen["progress"] and seen["progress"] == sorted(seen["progress"])
