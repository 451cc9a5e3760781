"""The S3-compatible artifact store against a real S3 API server process (moto's): a run
folder goes up and comes back file by file; names that are not artifact names never become
keys; a store that does not answer says what to check, and a run whose files cannot be stored
ends ``error`` with that reason (its verdict is not recorded as done without its report)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from benchmarks.hosts import BUCKET, s3_env, s3_server
from diffie import run_store
from diffie.artifact_store import S3Store, StoreError, cache_locally
from diffie.composition import build_context
from diffie.errors import DiffieError
from diffie.models import Run
from diffie.pipeline import fresh_out
from diffie.verdict import Verdict, judge
from tests.conftest import make_settings
from workers import tasks


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with s3_server(tmp_path_factory.mktemp("s3")) as url:
        yield url


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    for name, value in s3_env(endpoint, "t").items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)


def test_a_run_folder_goes_up_and_comes_back(tmp_path: Path, endpoint: str, aws: None) -> None:
    store = S3Store(f"s3://{BUCKET}/team-a", endpoint_url=endpoint)
    folder = tmp_path / "runs" / "r1"
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("<html>report</html>")
    (folder / "shot.png").write_bytes(b"\x89PNG" + bytes(range(256)) * 100)
    (folder / ".hidden").write_text("not an artifact name")
    sent = store.upload("r1", folder)
    assert (sent.files, sent.bytes) == (2, 19 + 4 + 25600)
    keys = sorted(o["Key"] for o in store.client.list_objects_v2(Bucket=BUCKET,
                                                                  Prefix="team-a/")["Contents"])
    assert keys == ["team-a/runs/r1/index.html", "team-a/runs/r1/shot.png"]
    api_side = tmp_path / "api" / "r1"
    got = cache_locally(store, api_side, "r1", "shot.png")
    assert got is not None and got.read_bytes() == (folder / "shot.png").read_bytes()
    assert cache_locally(store, api_side, "r1", "missing.png") is None
    assert sorted(p.name for p in api_side.iterdir()) == ["shot.png"]     # no temp files left
    with pytest.raises(DiffieError):
        store.key("r1", "../r2/index.html")


def test_a_store_that_does_not_answer_fails_the_run_with_what_to_check(
        tmp_path: Path, aws: None) -> None:
    dead = "http://127.0.0.1:1"
    client = boto3.client("s3", endpoint_url=dead, region_name="us-east-1",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=2))
    store = S3Store(f"s3://{BUCKET}/x", client=client)
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "index.html").write_text("x")
    with pytest.raises(StoreError) as caught:
        store.upload("r1", folder)
    assert "DIFFIE_ARTIFACT_STORE" in str(caught.value) and "index.html" in str(caught.value)

    ctx = build_context(make_settings(tmp_path / "data"))
    try:
        ctx.artifact_store = store
        run_id = run_store.submit_url(ctx.db, base_url="http://b", head_url="http://h",
                                      spec_text="flows: []")

        def pipeline(*_: Any) -> Verdict:
            out = fresh_out(ctx.settings, run_id)
            out.path("index.html").write_text("<html></html>")
            return judge(run_id, [])

        assert tasks.execute_run(ctx, run_id, "w", pipeline) == "error"
        with ctx.db.session() as s:
            run = s.get(Run, run_id)
            assert run is not None and run.status == "error"
            assert "did not take index.html" in (run.reason or "")
            assert run.verdict is not None and "s3://" not in run.verdict["reason"]   # public
    finally:
        ctx.close()
