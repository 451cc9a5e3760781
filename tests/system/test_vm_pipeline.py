"""Repo mode for real, end to end: the API on HTTP → a Celery broker (Redis, or the embedded
SQLite one) → a ``celery worker`` subprocess → the pipeline, which deploys base and head of a
corpus change into restored VM snapshots (libvirt + QEMU) and drives Chromium through the shop.

- Corpus changes with different expected verdicts end with the manifest's status and kinds,
  and no domain or overlay of the runs is left; one of them comes from a coding agent over
  MCP as a patch of uncommitted work, is approved, and passes as approved the second time.
- A worker killed (SIGKILL) while its run's VM is up: a new worker retries the run (or ends it
  ``error`` with a reason, never stuck ``running``), and its reaper removes the dead worker's
  domain and overlay.

Slots are shared with whatever else runs VMs on the machine (host lock files): runs may wait.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from diffie.app_context import AppContext
from diffie.composition import build_context
from diffie.config import Settings
from diffie.sandbox import domain as dx
from diffie.sandbox.libvirt import Hypervisor
from diffie.sandbox.slots import Holder
from diffie.sandbox.store import ImageInfo, leases_dir
from examples.corpus import CHANGES_DIR, SHOP_DIR, ChangeCase, load_manifest, materialize_repo
from tests.conftest import (
    LiveServer,
    finished,
    stop_process,
    submit_repo,
    wait_until,
    worker_process,
)
from tests.system.conftest import vm_settings

pytestmark = [pytest.mark.system, pytest.mark.timeout(5400)]

RUN_TIMEOUT = 900.0        # one run: two VM restores and the shop's flows under TCG (+ slot wait)
CHANGES = ["layout-shift-banner", "page-error-home", "deploy-syntax-error"]
# Short liveness in the worker: a killed worker's run is retried within a minute.
LIVENESS: dict[str, Any] = dict(heartbeat_s=2.0, stale_after_s=30.0)


def cases() -> dict[str, ChangeCase]:
    return {c.id: c for c in load_manifest(CHANGES_DIR)}


def holders(settings: Settings) -> list[tuple[str, Holder | None]]:
    """(name, holder) of every Diffie domain on the host (other processes' included)."""
    with Hypervisor(settings.libvirt_uri) as hv:
        return [(d.name, Holder.parse(dx.holder_of(d.description))) for d in hv.diffie_domains()]


def run_domains(settings: Settings, run_ids: list[str]) -> list[str]:
    """Domains leased for one of these runs (the holder records the run id)."""
    return [name for name, h in holders(settings)
            if h is not None and h.run_id and any(r.startswith(h.run_id) for r in run_ids)]


def overlays(settings: Settings, before: frozenset[str] = frozenset()) -> list[str]:
    """Lease directories (in the image cache, shared by every process of the host) that were
    not there ``before``."""
    base = leases_dir(settings)
    return sorted(p.name for p in base.iterdir() if p.name not in before) if base.is_dir() else []


def assert_expected(case: ChangeCase, run: dict[str, Any], log: Path) -> None:
    assert run["status"] == "done", (case.id, run["reason"], log.read_text()[-3000:])
    verdict = run["verdict"]
    kinds = {f["kind"] for f in verdict["findings"]}
    assert verdict["status"] == case.expected, (case.id, verdict["status"], sorted(kinds))
    assert set(case.kinds) <= kinds, (case.id, sorted(kinds))


@pytest.fixture
def vm_api(shop_image: ImageInfo, tmp_path: Path, request: pytest.FixtureRequest,
           live_api: Callable[[AppContext], LiveServer]) -> Iterator[tuple[AppContext, httpx.Client]]:
    """The API of a context on VM settings; the broker is Redis when the test asks for
    ``redis_url`` through ``broker`` = "redis", the embedded SQLite broker otherwise."""
    broker = getattr(request, "param", "embedded")
    broker_url = request.getfixturevalue("redis_url") if broker == "redis" else ""
    settings = vm_settings(tmp_path / "data", broker_url=broker_url, api_tokens=[],
                           noise_floor=False, github_app_id="", github_webhook_secret="",
                           repo_mode_sources=[str(tmp_path)],
                           queue_name=f"diffie-test-{secrets.token_hex(4)}", **LIVENESS)
    ctx = build_context(settings)
    server = live_api(ctx)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield ctx, client
    ctx.close()


def submit_change(api: httpx.Client, case: ChangeCase, tmp: Path) -> str:
    repo = tmp / f"repo-{case.id}"
    base, head = materialize_repo(SHOP_DIR, case.patch_path, repo)
    return submit_repo(api, repo, base, head)


async def _agent(url: str, repo: Path, base: str, patch: str,
                 submitted: threading.Event) -> dict[str, Any]:
    """A coding agent over MCP (streamable HTTP at /mcp): the change as a patch on base →
    wait (progress) → compact result → the finding with its picture → approve → the same
    change again, until that run's verdict."""
    seen: dict[str, Any] = {"progress": [[], []], "runs": []}
    attempt = 0

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen["progress"][attempt].append(progress)     # a counter per run

    async with create_mcp_http_client() as http, \
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        for attempt in range(2):
            got = await session.call_tool("submit", {"repo": str(repo), "base": base,
                                                     "patch": patch})
            assert not got.is_error, got.content
            submitted.set()
            run_id = got.structured_content["run_id"]
            for _ in range(int(3 * RUN_TIMEOUT / 45)):
                waited = await session.call_tool("wait", {"run_id": run_id, "timeout_s": 45},
                                                 progress_callback=on_progress)
                assert not waited.is_error, waited.content
                if waited.structured_content["finished"]:
                    break
            result = waited.structured_content["result"]
            seen["runs"].append((run_id, result))
            if attempt or result["status"] != "changed":
                break
            group = result["groups"][0]
            full = await session.call_tool("finding", {
                "run_id": run_id, "finding_id": group["finding_ids"][0], "include_image": True})
            seen["finding"] = full.structured_content["finding"]
            seen["images"] = [c for c in full.content if c.type == "image"]
            approved = await session.call_tool("approve", {"run_id": run_id,
                                                           "note": "the taller banner is wanted"})
            assert not approved.is_error, approved.content
            seen["approved"] = approved.structured_content
    return seen


@pytest.mark.parametrize("vm_api", ["redis"], indirect=True)
def test_corpus_changes_through_api_and_queue(vm_api: tuple[AppContext, httpx.Client],
                                              tmp_path: Path) -> None:
    """Two corpus changes over the REST API; the layout shift as an agent sends it over MCP:
    uncommitted work (a patch on base) applied by the worker in its checkout, approved, and
    reported approved when the same change comes again."""
    ctx, api = vm_api
    corpus = cases()
    log = tmp_path / "worker.log"
    before = frozenset(overlays(ctx.settings))
    shift = corpus["layout-shift-banner"]
    repo = tmp_path / "repo-agent"
    base, _ = materialize_repo(SHOP_DIR, None, repo)
    patch = (CHANGES_DIR / shift.patch).read_text(encoding="utf-8")
    submitted = threading.Event()
    agent: dict[str, Any] = {}
    server_url = str(api.base_url).rstrip("/")

    def run_agent() -> None:
        try:
            agent.update(anyio.run(_agent, server_url, repo, base, patch, submitted))
        except BaseException as exc:         # reported below, in the test's thread
            agent["error"] = exc
            submitted.set()

    worker = worker_process(ctx.settings, log)
    thread = threading.Thread(target=run_agent, name="agent")
    try:
        thread.start()
        assert submitted.wait(60), "the agent could not submit"
        ids = {cid: submit_change(api, corpus[cid], tmp_path)
               for cid in CHANGES if cid != shift.id}
        runs = {cid: finished(api, run_id, timeout=RUN_TIMEOUT, interval=2)
                for cid, run_id in ids.items()}
        thread.join(4 * RUN_TIMEOUT)
    finally:
        stop_process(worker, timeout=60)
    for cid, run in runs.items():
        assert_expected(corpus[cid], run, log)
        assert run["change"]["mode"] == "repo"
    assert "error" not in agent, agent.get("error")
    (first_id, first), (second_id, second) = agent["runs"]
    run = api.get(f"/v1/runs/{first_id}").json()
    assert run["change"]["head"].startswith("diff:"), run["change"]
    assert_expected(shift, run, log)
    assert first["status"] == "changed" and len(first["groups"]) == 1, first
    assert "body > div.banner padding 6px 16px → 10px 16px" in first["groups"][0]["message"]
    assert all(p and p == sorted(p) for p in agent["progress"]), agent["progress"]
    assert agent["finding"]["kind"] == "visual_change" and len(agent["images"]) == 1
    assert agent["approved"]["whole_run"]
    assert second["status"] == "pass" and "approved before" in second["summary"], second
    ids.update(agent=first_id, again=second_id)
    assert run_domains(ctx.settings, list(ids.values())) == []
    assert overlays(ctx.settings, before) == []


def test_killed_worker_mid_vm_run(vm_api: tuple[AppContext, httpx.Client],
                                  tmp_path: Path) -> None:
    ctx, api = vm_api
    case = cases()["layout-shift-banner"]
    log = tmp_path / "workers.log"
    before = frozenset(overlays(ctx.settings))
    first = worker_process(ctx.settings, log)
    second = None
    try:
        run_id = submit_change(api, case, tmp_path)

        def vm_up() -> bool | list[str]:
            run = api.get(f"/v1/runs/{run_id}").json()
            return run["status"] == "running" and run_domains(ctx.settings, [run_id])

        # base and head may each hold a VM (side by side when two slots are free)
        seen = wait_until(vm_up, timeout=RUN_TIMEOUT, interval=1,
                          what="the first worker's VM of the run")
        killed = first.pid
        os.killpg(killed, signal.SIGKILL)           # the worker and its browser; the VMs stay
        first.wait(10)
        assert api.get(f"/v1/runs/{run_id}").json()["status"] == "running"
        held = {n for n, h in holders(ctx.settings) if h is not None and h.pid == killed}
        # a side that finished in the instant before the kill has released its VM
        assert held & set(seen) and held <= set(run_domains(ctx.settings, [run_id])), \
            (seen, held)
        assert len(held) <= 2, held
        assert any(f"-{killed}." in name for name in overlays(ctx.settings))

        second = worker_process(ctx.settings, log)

        def reaped() -> bool:
            return not any(h is not None and h.pid == killed for _, h in holders(ctx.settings)) \
                and not any(f"-{killed}." in name for name in overlays(ctx.settings))

        wait_until(reaped, timeout=180, interval=1, what="the reaper to remove the dead VM")
        run = finished(api, run_id, timeout=2 * RUN_TIMEOUT, interval=2)
    finally:
        stop_process(first)
        stop_process(second, timeout=60)
    assert run["status"] in ("done", "error"), run
    if run["status"] == "done":
        assert run["attempts"] >= 2, run
        assert_expected(case, run, log)
    else:
        assert run["reason"], run
    assert run_domains(ctx.settings, [run_id]) == []
    assert overlays(ctx.settings, before) == []
