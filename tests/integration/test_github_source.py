"""Fetching pull requests over git's smart HTTP with the installation token (real git, real
HTTP on loopback, tokens from the GitHub stand-in)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from diffie.errors import SourceError
from diffie.github.client import GitHubClient
from diffie.github.repo_cache import SourceCache
from tests.github_standin import (
    GitHubStandIn,
    GitSmartHTTP,
    app_settings,
    commit_files,
    git,
    make_rsa_key,
    publish_bare,
)

pytestmark = pytest.mark.integration

PRIVATE, PUBLIC = make_rsa_key()


@dataclass
class Repos:
    base: str           # PR base commit (an old commit of main: not a branch tip)
    main_tip: str
    head: str           # PR head in octo/shop (branch "feature")
    fork_head: str      # PR head in forker/shop only
    root: Path


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Repos:
    tmp = tmp_path_factory.mktemp("gitsrv")
    root = tmp / "srv"
    work = tmp / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    base = commit_files(work, {"index.html": "<h1>Shop</h1>\n", "static/app.js": "run();\n"},
                        "base")
    git(work, "checkout", "-q", "-b", "feature")
    head = commit_files(work, {"static/app.js": "run(); broken(\n"}, "feature")
    git(work, "checkout", "-q", "main")
    main_tip = commit_files(work, {"README.md": "main moved on\n"}, "main moves")
    publish_bare(work, root, "octo", "shop")
    # the fork: a copy of the repository with one more branch that octo/shop does not have
    git(work, "checkout", "-q", "-b", "fork-fix", base)
    fork_head = commit_files(work, {"index.html": "<h1>Shop (fork)</h1>\n"}, "fork change")
    fork = publish_bare(work, root, "forker", "shop")
    git(work, "checkout", "-q", "main")
    git(work, "branch", "-q", "-D", "fork-fix")
    assert fork.exists()
    # GitHub keeps refs/pull/<n>/head in the base repository, for forks too
    git(root / "octo" / "shop.git", "fetch", "-q", str(fork), f"{fork_head}:refs/pull/9/head")
    return Repos(base, main_tip, head, fork_head, root)


@pytest.fixture
def standin() -> Iterator[GitHubStandIn]:
    with GitHubStandIn(app_id="77", public_key_pem=PUBLIC) as s:
        yield s


@pytest.fixture
def client(tmp_path: Path, standin: GitHubStandIn) -> Iterator[GitHubClient]:
    with GitHubClient.from_settings(app_settings(tmp_path, standin, PRIVATE)) as c:
        yield c


@pytest.fixture
def server(repos: Repos, standin: GitHubStandIn) -> Iterator[GitSmartHTTP]:
    with GitSmartHTTP(repos.root, standin.is_valid_token) as srv:
        yield srv


def test_fetch_base_and_head_with_the_installation_token(tmp_path: Path, repos: Repos,
                                                         server: GitSmartHTTP,
                                                         client: GitHubClient) -> None:
    token = client.installation_token(5)
    cache = SourceCache(tmp_path / "cache")
    url = server.clone_url("octo", "shop")
    bare = cache.fetch_pull_request(owner="octo", repo="shop", base_url=url, base_sha=repos.base,
                                    head_url=url, head_sha=repos.head, token=token, pr_number=3)
    assert bare == tmp_path / "cache" / "octo" / "shop.git"
    # fetched by SHA (protocol v2), no branch was needed; both kept from garbage collection
    assert git(bare, "for-each-ref", "--format=%(refname)").split() == sorted(
        [f"refs/diffie/keep/{repos.base}", f"refs/diffie/keep/{repos.head}"])
    assert server.requests and all(r.authorized and r.user == "x-access-token"
                                   for r in server.requests)
    base_dir = cache.checkout("octo", "shop", repos.base, tmp_path / "base")
    head_dir = cache.checkout("octo", "shop", repos.head, tmp_path / "head")
    assert (base_dir / "static/app.js").read_text() == "run();\n"
    assert (head_dir / "static/app.js").read_text() == "run(); broken(\n"
    assert not (head_dir / "README.md").exists()
    assert sorted(cache.list_files("octo", "shop", repos.head)) == ["index.html",
                                                                    "static/app.js"]
    # the token is nowhere on disk in the cache
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    for path in bare.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert token.encode() not in data and basic.encode() not in data, path


def test_cache_is_reused_across_runs(tmp_path: Path, repos: Repos, server: GitSmartHTTP,
                                     client: GitHubClient) -> None:
    token = client.installation_token(5)
    cache = SourceCache(tmp_path / "cache")
    url = server.clone_url("octo", "shop")
    cache.fetch_pull_request(owner="octo", repo="shop", base_url=url, base_sha=repos.base,
                             head_url=url, head_sha=repos.head, token=token)
    before = len(server.requests)
    again = SourceCache(tmp_path / "cache")            # another run, another process
    again.fetch_pull_request(owner="Octo", repo="Shop", base_url=url, base_sha=repos.base,
                             head_url=url, head_sha=repos.head, token=token)
    assert len(server.requests) == before              # nothing fetched twice


def test_fork_pull_request_fetches_head_from_the_head_repository(
        tmp_path: Path, repos: Repos, server: GitSmartHTTP, client: GitHubClient) -> None:
    token = client.installation_token(5)
    cache = SourceCache(tmp_path / "cache")
    cache.fetch_pull_request(owner="octo", repo="shop",
                             base_url=server.clone_url("octo", "shop"), base_sha=repos.base,
                             head_url=server.clone_url("forker", "shop"),
                             head_sha=repos.fork_head, token=token, pr_number=9)
    assert {r.path.split(".git")[0] for r in server.requests} == {"/octo/shop", "/forker/shop"}
    head = cache.checkout("octo", "shop", repos.fork_head, tmp_path / "head")
    assert (head / "index.html").read_text() == "<h1>Shop (fork)</h1>\n"
    # cached under the base repository, not the fork
    assert not (tmp_path / "cache" / "forker").exists()


def test_fork_deleted_falls_back_to_the_pull_ref_of_the_base(
        tmp_path: Path, repos: Repos, server: GitSmartHTTP, client: GitHubClient) -> None:
    token = client.installation_token(5)
    cache = SourceCache(tmp_path / "cache")
    cache.fetch_pull_request(owner="octo", repo="shop",
                             base_url=server.clone_url("octo", "shop"), base_sha=repos.base,
                             head_url=server.clone_url("gone", "shop"),
                             head_sha=repos.fork_head, token=token, pr_number=9)
    assert cache.list_files("octo", "shop", repos.fork_head) == ["index.html", "static/app.js"]


def test_server_refusing_bare_sha_falls_back_to_refs(tmp_path: Path, repos: Repos,
                                                     standin: GitHubStandIn,
                                                     client: GitHubClient) -> None:
    token = client.installation_token(5)
    with GitSmartHTTP(repos.root, standin.is_valid_token, protocol_v2=False) as v0:
        cache = SourceCache(tmp_path / "cache")
        url = v0.clone_url("octo", "shop")
        # the base is no branch tip any more: a v0 server refuses it by SHA
        bare = cache.fetch_pull_request(owner="octo", repo="shop", base_url=url,
                                        base_sha=repos.base, head_url=url, head_sha=repos.head,
                                        token=token)
    fell_back = git(bare, "for-each-ref", "--format=%(refname)", "refs/diffie/heads")
    assert "refs/diffie/heads/main" in fell_back.split()
    assert cache.checkout("octo", "shop", repos.base, tmp_path / "b").joinpath("index.html") \
        .exists()


def test_bad_token_is_a_source_error_without_the_token(tmp_path: Path, repos: Repos,
                                                       server: GitSmartHTTP) -> None:
    token = "ghs_" + "Z" * 36
    cache = SourceCache(tmp_path / "cache")
    with pytest.raises(SourceError) as info:
        cache.fetch_pull_request(owner="octo", repo="shop",
                                 base_url=server.clone_url("octo", "shop"), base_sha=repos.base,
                                 head_url=None, head_sha=repos.head, token=token)
    message = str(info.value)
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    assert token not in message and basic not in message and "Z" * 20 not in message
    assert "git fetch failed" in message
    assert server.requests and not any(r.authorized for r in server.requests)


def test_expired_token_fails_then_a_fresh_one_works(tmp_path: Path, repos: Repos,
                                                    server: GitSmartHTTP, standin: GitHubStandIn,
                                                    client: GitHubClient) -> None:
    old = client.installation_token(5)
    standin.expire_tokens()
    cache = SourceCache(tmp_path / "cache")
    url = server.clone_url("octo", "shop")
    with pytest.raises(SourceError):
        cache.fetch_pull_request(owner="octo", repo="shop", base_url=url, base_sha=repos.base,
                                 head_url=None, head_sha=repos.head, token=old)
    client.app.invalidate(5)
    fresh = client.installation_token(5)
    assert fresh != old
    cache.fetch_pull_request(owner="octo", repo="shop", base_url=url, base_sha=repos.base,
                             head_url=None, head_sha=repos.head, token=fresh)


def test_unknown_commit_is_a_clear_source_error(tmp_path: Path, server: GitSmartHTTP,
                                                client: GitHubClient) -> None:
    missing = "0123456789" * 4
    with pytest.raises(SourceError) as info:
        SourceCache(tmp_path / "cache").fetch(
            "octo", "shop", [(server.clone_url("octo", "shop"), missing)],
            token=client.installation_token(5))
    assert str(info.value) == f"commit {missing} is not in {server.clone_url('octo', 'shop')}"


def test_invalid_names_and_revisions_are_refused(tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "cache")
    with pytest.raises(SourceError, match="repository name"):
        cache.repo_dir("..", "shop")
    with pytest.raises(SourceError, match="revision"):
        cache.fetch("octo", "shop", [("http://127.0.0.1:1/x.git", "--upload-pack=evil")],
                    token=None)


def test_checkout_refuses_a_non_empty_destination(tmp_path: Path, repos: Repos,
                                                  server: GitSmartHTTP,
                                                  client: GitHubClient) -> None:
    cache = SourceCache(tmp_path / "cache")
    url = server.clone_url("octo", "shop")
    cache.fetch("octo", "shop", [(url, repos.head)], token=client.installation_token(5))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "x").write_text("x")
    with pytest.raises(SourceError, match="not empty"):
        cache.checkout("octo", "shop", repos.head, dest)
