"""End to end, URL mode: every change of examples/shop/changes/ through the HTTP API, the Redis
broker, a real worker, real Chromium and PostgreSQL — with the verdict and the finding kinds
the manifest expects.

For each change the corpus is materialised as a git repository (base commit, patched head
commit); base and head trees run side by side on the host (``ShopServer``, each with a fresh
PostgreSQL database) and are submitted as two URLs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from diffie.api import create_app
from diffie.app_context import AppContext
from diffie.composition import build_context
from diffie.git_source import checkout
from examples.corpus import CHANGES_DIR, SHOP_DIR, ChangeCase, ShopServer, load_manifest, materialize_repo
from tests.conftest import (
    LiveServer,
    create_pg_database,
    drop_pg_database,
    drop_redis_test_keys,
    make_settings,
    redis_test_url,
    wait_until,
)
from workers.embedded import EmbeddedWorker

# Regressions and no-op changes. Noise changes have their own suite (determinism), and a change
# whose expected finding is a deploy error needs the VM path: URL mode has nothing to deploy.
CASES = [c for c in load_manifest(CHANGES_DIR)
         if c.category in ("regression", "noop") and "deploy_error" not in c.kinds]


@dataclass
class Env:
    ctx: AppContext
    api: httpx.Client


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    db_name, db_url = create_pg_database()
    broker_url = redis_test_url()
    settings = make_settings(tmp_path_factory.mktemp("e2e") / "data", database_url=db_url,
                             broker_url=broker_url, noise_floor=True,
                             parallel_sides=True, heartbeat_s=2.0)
    ctx = build_context(settings)
    try:
        with LiveServer(create_app(context=ctx)) as server, \
                EmbeddedWorker(ctx.celery), \
                httpx.Client(base_url=server.url, timeout=30) as api:
            yield Env(ctx, api)
    finally:
        ctx.close()
        drop_pg_database(db_name)
        drop_redis_test_keys(broker_url)


def trees(case: ChangeCase, tmp: Path) -> tuple[Path, Path]:
    base_rev, head_rev = materialize_repo(SHOP_DIR, case.patch_path, tmp / "repo")
    checkout(tmp / "repo", base_rev, tmp / "base")
    checkout(tmp / "repo", head_rev, tmp / "head")
    return tmp / "base", tmp / "head"


def verify(env: Env, base_url: str, head_url: str, spec_text: str, title: str) -> dict[str, Any]:
    resp = env.api.post("/v1/runs", json={"base_url": base_url, "head_url": head_url,
                                          "spec": spec_text, "title": title})
    assert resp.status_code == 202, resp.text
    run_id = resp.json()["id"]

    def done() -> dict[str, Any] | None:
        run: dict[str, Any] = env.api.get(f"/v1/runs/{run_id}").json()
        return run if run["status"] in ("done", "error") else None

    result: dict[str, Any] = wait_until(done, timeout=900, interval=0.5, what=f"run {run_id}")
    return result


def describe(verdict: dict[str, Any]) -> str:
    return "\n".join([verdict.get("summary", "")] + [
        f"  {f['kind']} {f.get('flow')}@{f.get('viewport')} step {f.get('step')}: "
        f"{f['message'][:160]}" for f in verdict.get("findings", [])])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_change_gets_the_expected_verdict(env: Env, case: ChangeCase, tmp_path: Path) -> None:
    base_dir, head_dir = trees(case, tmp_path)
    spec_text = (head_dir / ".diffie.yml").read_text()
    started = time.monotonic()
    with ShopServer(base_dir) as base, ShopServer(head_dir) as head:
        run = verify(env, base.url, head.url, spec_text, title=case.id)
    assert run["status"] == "done", run["reason"]
    verdict = run["verdict"]
    findings = verdict["findings"]
    assert verdict["status"] == case.expected, describe(verdict)
    assert set(case.kinds) <= {f["kind"] for f in findings}, describe(verdict)
    if case.flows is not None:
        assert {f["flow"] for f in findings} <= set(case.flows), describe(verdict)
    if case.viewports is not None:
        assert {f["viewport"] for f in findings} <= set(case.viewports), describe(verdict)
    # the published artifacts are there and consistent with the run
    assert env.api.get(f"/v1/runs/{run['id']}/report").status_code == 200
    served = env.api.get(f"/v1/runs/{run['id']}/artifacts/verdict.json").json()
    assert served["status"] == verdict["status"] and served["run_id"] == run["id"]
    for f in findings:
        for name in f["evidence"]:
            assert env.api.get(f"/v1/runs/{run['id']}/artifacts/{name}").status_code == 200
    print(f"{case.id}: {verdict['status']} in {time.monotonic() - started:.0f} s")
