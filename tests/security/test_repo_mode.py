"""Repo mode through the API takes repositories only from where the operator allows
(DIFFIE_REPO_MODE_SOURCES): a submitter cannot make the worker read another local repository
or clone an internal URL, and the answer never depends on what exists on the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from diffie.api import create_app
from diffie.composition import build_context
from diffie.submit_policy import repo_source_allowed
from tests.conftest import make_repo, make_settings

SPEC = """flows:
  - name: home
    steps: [{goto: /}]
sandbox: {image: shop, deploy: ["true"], port: 8000}
"""


def _client(tmp: Path, sources: list[str]) -> Iterator[TestClient]:
    ctx = build_context(make_settings(tmp / "data", repo_mode_sources=sources))
    ctx.enqueue_fn = lambda run_id: None
    try:
        with TestClient(create_app(context=ctx)) as client:
            yield client
    finally:
        ctx.close()


@pytest.fixture
def repos(tmp_path: Path) -> tuple[Path, Path]:
    allowed, _ = make_repo(tmp_path / "allowed", [{".diffie.yml": SPEC}, {"a.txt": "x"}])
    private, _ = make_repo(tmp_path / "private", [{".diffie.yml": SPEC}, {"a.txt": "y"}])
    return allowed, private


def _submit(client: TestClient, repo: str) -> tuple[int, str]:
    resp = client.post("/v1/runs", json={"repo": repo, "base": "HEAD~1", "head": "HEAD"})
    return resp.status_code, resp.text


def test_repo_mode_is_off_through_the_api_by_default(tmp_path: Path,
                                                     repos: tuple[Path, Path]) -> None:
    for client in _client(tmp_path, []):
        status, text = _submit(client, str(repos[0]))
        assert status == 422 and "DIFFIE_REPO_MODE_SOURCES" in text


def test_only_repositories_under_an_allowed_source(tmp_path: Path,
                                                   repos: tuple[Path, Path]) -> None:
    allowed, private = repos
    for client in _client(tmp_path, [str(allowed.parent)]):
        status, text = _submit(client, str(allowed))
        assert status == 202, text
        refused = [_submit(client, repo) for repo in (
            str(private), str(allowed) + "/../../private", "/nonexistent/repo", "/etc",
            "http://127.0.0.1:6379/x.git", "file:///etc")]
        assert {status for status, _ in refused} == {422}
        # the same answer whether the path exists or not: no oracle of the server's disk
        texts = {text.replace(repo, "") for (status, text), repo in zip(refused[:4], (
            str(private), str(allowed) + "/../../private", "/nonexistent/repo", "/etc"), strict=True)}
        assert len(texts) == 1 and "repo_not_allowed" in texts.pop()


def test_url_sources_match_at_a_path_boundary() -> None:
    sources = ["https://git.example.com/team"]
    assert repo_source_allowed("https://git.example.com/team/app.git", sources)
    assert not repo_source_allowed("https://git.example.com/team-evil/app.git", sources)
    assert not repo_source_allowed("https://git.example.com/team/../other/app.git", sources)
    assert not repo_source_allowed("https://git.example.com.evil.net/team/a.git", sources)
    assert not repo_source_allowed("http://127.0.0.1:6379/team/a.git", sources)
    assert not repo_source_allowed("/srv/repos/app", sources)
