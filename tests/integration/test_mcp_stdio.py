"""``diffie mcp`` driven by a real MCP client (the ``mcp`` package) over stdio, against a real
embedded worker and Chromium (URL mode, two tiny sites): submit → wait with progress
notifications → compact result → one finding in full; the mistakes a model can fix come back
as tool errors that say what to fix."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from PIL import Image

from tests.conftest import PAGE, Site
from tests.integration.test_queue_cli import SPEC, diffie_env
from tests.paths import REPO_ROOT

TOOLS = {"submit", "wait", "result", "finding", "cancel", "list_runs"}


def text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def _session(data: Path, base_url: str, head_url: str,
                   visual: tuple[str, str] | None = None) -> dict[str, Any]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "diffie.cli", "mcp"],
                                   env=diffie_env(data), cwd=str(REPO_ROOT))
    seen: dict[str, Any] = {"progress": []}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        seen["tools"] = {t.name: t for t in listed.tools}

        bad = await session.call_tool("submit", {"base_url": base_url, "head_url": head_url,
                                                 "spec": SPEC.replace("- goto: /", "- goto:")})
        seen["spec_error"] = (bad.is_error, text(bad))
        unknown = await session.call_tool("wait", {"run_id": "nope", "timeout_s": 1})
        seen["unknown"] = (unknown.is_error, text(unknown))

        submitted = await session.call_tool("submit", {"base_url": base_url,
                                                       "head_url": head_url, "spec": SPEC})
        assert not submitted.is_error, text(submitted)
        run_id = submitted.structured_content["run_id"]

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen["progress"].append((progress, message))

        calls = 0
        while True:
            calls += 1
            waited = await session.call_tool("wait", {"run_id": run_id, "timeout_s": 20},
                                             progress_callback=on_progress)
            assert not waited.is_error, text(waited)
            if waited.structured_content["finished"] or calls > 15:
                break
        seen["wait"], seen["wait_calls"] = waited.structured_content, calls
        page = await session.call_tool("result", {"run_id": run_id})
        seen["result"] = page.structured_content
        group = page.structured_content["groups"][0]
        full = await session.call_tool("finding", {"run_id": run_id,
                                                   "finding_id": group["finding_ids"][0]})
        seen["finding"] = full.structured_content
        missing = await session.call_tool("finding", {"run_id": run_id, "finding_id": "f-x"})
        seen["missing"] = (missing.is_error, text(missing))
        bad_cursor = await session.call_tool("result", {"run_id": run_id, "cursor": "zz"})
        seen["bad_cursor"] = bad_cursor.is_error
        late = await session.call_tool("cancel", {"run_id": run_id})
        seen["late_cancel"] = (late.is_error, text(late))
        runs = await session.call_tool("list_runs", {})
        seen["runs"] = runs.structured_content["runs"]

        seen["progress"] = list(seen["progress"])        # the first run's, kept apart
        if visual:                       # a visual change, approved, then verified again
            seen["visual"] = []
            for _ in range(2):
                done = await verify(session, *visual, None)
                seen["visual"].append(done)
                if done["result"]["status"] == "changed":
                    group = done["result"]["groups"][0]
                    approved = await session.call_tool("approve", {
                        "run_id": done["run_id"], "finding_ids": group["finding_ids"],
                        "note": "the new colour is intended"})
                    assert not approved.is_error, text(approved)
                    seen["approved"] = approved.structured_content
                    full = await session.call_tool("finding", {
                        "run_id": done["run_id"], "finding_id": group["finding_ids"][0],
                        "include_image": True})
                    seen["approved_finding"] = full.structured_content["finding"]
                    seen["images"] = [base64.b64decode(c.data) for c in full.content
                                      if c.type == "image"]
    return seen


# no step with a short timeout: a loaded host must not turn a visual change into a failed step
VISUAL_SPEC = """\
viewports:
  desktop: {width: 800, height: 600}
noise_floor: false
flows:
  - name: home
    steps:
      - goto: /
      - screenshot: home
"""


async def verify(session: ClientSession, base_url: str, head_url: str, on_progress: Any,
                 spec: str = VISUAL_SPEC) -> dict[str, Any]:
    """submit, then wait until finished (at most 15 calls); the last wait's content."""
    submitted = await session.call_tool("submit", {"base_url": base_url, "head_url": head_url,
                                                   "spec": spec})
    assert not submitted.is_error, text(submitted)
    run_id = submitted.structured_content["run_id"]
    for _ in range(15):
        waited = await session.call_tool("wait", {"run_id": run_id, "timeout_s": 20},
                                         progress_callback=on_progress)
        assert not waited.is_error, text(waited)
        if waited.structured_content["finished"]:
            break
    result: dict[str, Any] = waited.structured_content
    return result


def test_an_agent_verifies_a_change_over_mcp_stdio(tmp_path: Path) -> None:
    button = PAGE % '<button id="buy">Buy</button>'
    with Site({"/": button}) as base, Site({"/": PAGE % ""}) as head, \
            Site({"/": button.replace("#36c", "#c33")}) as recoloured:
        seen = anyio.run(_session, tmp_path / "data", base.url, head.url,
                         (base.url, recoloured.url))

    assert TOOLS <= set(seen["tools"])
    assert all(seen["tools"][name].output_schema for name in TOOLS)
    is_error, message = seen["spec_error"]
    assert is_error and "spec:7 (flows[0].steps[0]): a goto step needs a url" in message
    assert seen["unknown"][0] and "no run 'nope'" in seen["unknown"][1]

    wait = seen["wait"]
    assert wait["finished"] and wait["status"] == "done"
    assert seen["progress"], "no progress notification arrived"
    values = [value for value, _ in seen["progress"]]
    assert values == sorted(values) and len(set(values)) == len(values)   # monotonic
    assert any("phase" in (message or "") for _, message in seen["progress"])

    result = seen["result"]
    assert result["status"] == "fail" and result["counts"]["step_failed"] == 1
    assert result["groups"][0]["kind"] == "step_failed"
    assert len(result["groups"][0]["message"]) <= 300
    assert result["report"] and result["next_steps"].startswith("Fix what each group names")
    assert wait["result"]["groups"] == result["groups"]
    finding = seen["finding"]["finding"]
    assert finding["kind"] == "step_failed" and finding["step"] == 1
    assert seen["missing"][0] and "has no finding 'f-x'" in seen["missing"][1]
    assert seen["bad_cursor"]
    assert seen["late_cancel"][0] and "already finished" in seen["late_cancel"][1]
    assert seen["runs"][0]["run_id"] == wait["run_id"]

    first, second = seen["visual"]
    assert first["result"]["status"] == "changed", first["result"]
    why = first["result"]["groups"][0]["message"]        # the cause, in DOM terms
    assert "div.box background-color rgb(51, 102, 204) → rgb(204, 51, 51)" in why, why
    assert seen["approved"]["approved"] == first["result"]["groups"][0]["finding_ids"]
    assert seen["approved_finding"]["approval"].endswith(": the new colour is intended")
    assert second["result"]["status"] == "pass", second["result"]    # approved: sticks
    assert "approved before" in second["result"]["summary"]
    [picture] = seen["images"]                 # base | head | diff around the button
    with Image.open(io.BytesIO(picture)) as img:
        assert img.format == "PNG" and 3 * 20 < img.width <= 1200 and img.height < 600
