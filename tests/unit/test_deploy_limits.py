"""Deploy limits: the readiness URL is built by a URL parser, answers are quoted bounded and
escaped, and a revision too large to copy into the VM is a clear deploy error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from diffie.errors import DeployError
from diffie.sandbox.deploy import check_tree_size, deploy, ready_url, wait_ready
from diffie.spec import SandboxSpec
from tests.unit.test_sandbox_deploy import SPEC, App, FakeMachine


@pytest.fixture
def app() -> Iterator[App]:
    a = App()
    yield a
    a.server.shutdown()
    a.server.server_close()


@pytest.mark.parametrize(("path", "url"), [
    ("/health", "http://127.0.0.1:4100/health"),
    ("/ready?deep=1", "http://127.0.0.1:4100/ready?deep=1"),
    ("/", "http://127.0.0.1:4100/"),
])
def test_ready_url_is_the_app_origin_with_the_path(path: str, url: str) -> None:
    assert ready_url("http://127.0.0.1:4100", path) == url
    assert ready_url("http://127.0.0.1:4100/", path) == url


@pytest.mark.parametrize("path", ["@127.0.0.1:6379/x", "//127.0.0.1:6379/x",
                                  "http://169.254.169.254/", "/a@b", "/\\x", "/a\tb", "x"])
def test_ready_url_refuses_anything_but_a_path(path: str) -> None:
    with pytest.raises(DeployError, match="ready_path"):
        ready_url("http://127.0.0.1:4100", path)


def test_a_not_ready_answer_is_quoted_bounded_and_escaped() -> None:
    body = "\x1b[31mSECRET\n" + "x" * 5000

    def get(url: str) -> httpx.Response:
        return httpx.Response(503, text=body)

    with pytest.raises(DeployError) as info:
        wait_ready("http://127.0.0.1:4100/health", 0.05, poll_s=0.01, get=get)
    tail = info.value.output_tail
    assert tail.startswith("HTTP 503: '\\x1b[31mSECRET\\n") and len(tail) < 300
    assert "\x1b" not in str(info.value) and "\n" not in tail


def test_the_answer_of_another_host_is_never_quoted() -> None:
    def get(url: str) -> httpx.Response:
        return httpx.Response(503, text="INTERNAL canary-123",
                              request=httpx.Request("GET", "http://127.0.0.1:6379/x"))

    with pytest.raises(DeployError) as info:
        wait_ready("http://127.0.0.1:4100/health", 0.05, poll_s=0.01, get=get)
    assert "canary-123" not in str(info.value) + info.value.output_tail


def tree(root: Path, files: int, size: int = 10) -> Path:
    for i in range(files):
        (root / f"f{i}.txt").write_bytes(b"x" * size)
    (root / ".git").mkdir()
    for i in range(50):                              # excluded, as put_tree excludes it
        (root / ".git" / f"obj{i}").write_bytes(b"y" * 1000)
    return root


def test_tree_size_counts_what_put_tree_copies(tmp_path: Path) -> None:
    assert check_tree_size(tree(tmp_path, 5), max_files=5, max_bytes=50) == (5, 50)
    with pytest.raises(DeployError, match=r"more than 4 files .* \(DIFFIE_MAX_REPO_FILES\)"):
        check_tree_size(tmp_path, max_files=4, max_bytes=10_000)
    with pytest.raises(DeployError, match=r"more than 49 bytes .* \(DIFFIE_MAX_REPO_BYTES\)"):
        check_tree_size(tmp_path, max_files=100, max_bytes=49)


def test_a_tree_too_large_is_not_copied(app: App, tmp_path: Path) -> None:
    machine = FakeMachine(app, {})
    with pytest.raises(DeployError, match="DIFFIE_MAX_REPO_FILES"):
        deploy(machine, tree(tmp_path, 20), SPEC, max_files=10)
    assert machine.trees == [] and machine.commands == []


def test_a_spec_that_skipped_validation_still_cannot_name_another_host(
        app: App, tmp_path: Path) -> None:
    spec = SandboxSpec.model_construct(**{**SPEC.model_dump(), "ready_path": "@127.0.0.1:1/x"})
    assert isinstance(spec, SandboxSpec)
    with pytest.raises(DeployError, match="ready_path"):
        deploy(FakeMachine(app, {}), tmp_path, spec)
