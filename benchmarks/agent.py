"""``python -m benchmarks.agent``: what a coding agent spends to verify a change over MCP.

The agent's way, end to end: ``diffie mcp`` on stdio (the ``mcp`` package's own client, the
server's embedded worker, a real VM), the shop committed as base and a corpus change (default
``layout-shift-banner``) sent as a patch — uncommitted work — then ``wait`` until finished
(each call at most 45 s, counting calls and progress notifications), ``result`` (the compact
verdict), and for comparison the full verdict JSON of the same run. It prints the compact
result, whether it names the change's cause (the manifest's ``expect_cause`` words, else the
changed file's selectors), and as the last line::

    agent: compact_bytes=<n> full_bytes=<n> wait_calls=<n> seconds=<s>

The compact result must stay under 4 KB and name the cause (exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from examples.corpus import CHANGES_DIR, SHOP_DIR, load_manifest, materialize_repo

REPO = Path(__file__).resolve().parent.parent
COMPACT_LIMIT = 4096


def say(line: str) -> None:
    print(f"[bench] {line}", file=sys.stderr, flush=True)


def cause_words(patch: str) -> list[str]:
    """Class names and ids the patch's changed CSS/HTML lines touch (what naming the cause
    means without an explanation engine)."""
    words: list[str] = []
    current = ""
    for line in patch.splitlines():
        if re.match(r"^[ +-]\s*[.#][\w-]+.*\{", line):
            current = re.findall(r"[.#][\w-]+", line)[0]
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---")) and current:
            if current not in words:
                words.append(current)
    return words


async def drive(data: Path, repo: Path, base: str, patch: str) -> dict[str, Any]:
    env = {**os.environ, "DIFFIE_DATA_DIR": str(data), "DIFFIE_DATABASE_URL": "",
           "DIFFIE_BROKER_URL": "", "DIFFIE_VM_IMAGES_DIR": str(REPO / "vm_images")}
    params = StdioServerParameters(command=sys.executable, args=["-m", "diffie.cli", "mcp"],
                                   env=env, cwd=str(REPO))
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)
        say(f"progress {progress:.0f}: {message}")

    out: dict[str, Any] = {}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        start = time.monotonic()
        submitted = await session.call_tool("submit", {"repo": str(repo), "base": base,
                                                       "patch": patch,
                                                       "title": "benchmark: agent"})
        if submitted.is_error:
            raise SystemExit(f"submit failed: {submitted.content}")
        run_id = submitted.structured_content["run_id"]
        calls = 0
        while True:
            calls += 1
            waited = await session.call_tool("wait", {"run_id": run_id, "timeout_s": 45},
                                             progress_callback=on_progress)
            if waited.is_error:
                raise SystemExit(f"wait failed: {waited.content}")
            if waited.structured_content["finished"]:
                break
        out["seconds"] = time.monotonic() - start
        result = await session.call_tool("result", {"run_id": run_id})
        out.update(run_id=run_id, wait_calls=calls, progress=len(seen),
                   compact=result.structured_content,
                   compact_bytes=len(json.dumps(result.structured_content).encode()))
    verdict = data / "runs" / run_id / "verdict.json"
    out["full_bytes"] = len(verdict.read_bytes()) if verdict.is_file() else 0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.agent", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--change", default="layout-shift-banner")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    args = ap.parse_args(argv)
    case = {c.id: c for c in load_manifest(CHANGES_DIR)}[args.change]
    patch = (CHANGES_DIR / case.patch).read_text(encoding="utf-8")
    work = Path(tempfile.mkdtemp(prefix="diffie-bench-agent-"))
    repo = work / "shop"
    base, _ = materialize_repo(SHOP_DIR, None, repo)
    say(f"{args.change}: base {base[:12]}, the change as a {len(patch)}-byte patch; data in "
        f"{work}")
    got = anyio.run(drive, work / "data", repo, base, patch)
    compact = got["compact"]
    print(json.dumps(compact, indent=2))
    text = json.dumps(compact)
    words = cause_words(patch)
    named = [w for w in words if w in text]
    print(f"status={compact['status']} (expected {case.expected}); groups="
          f"{compact['total_groups']}; progress notifications={got['progress']}; "
          f"cause words {words}: named {named or 'none'}")
    print(f"agent: compact_bytes={got['compact_bytes']} full_bytes={got['full_bytes']} "
          f"wait_calls={got['wait_calls']} seconds={got['seconds']:.1f}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if got["compact_bytes"] < COMPACT_LIMIT and (named or not words) else 1


if __name__ == "__main__":
    sys.exit(main())
