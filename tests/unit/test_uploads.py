"""Uploaded work as the head of a repo-mode change (diffie.uploads): a patch or a git bundle
applied by the worker's source to a checkout of the base, with real git; what the API takes
and refuses; the user's repository gains nothing."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from diffie import run_store
from diffie.api import create_app
from diffie.app_context import AppContext
from diffie.errors import InputError, SourceError
from diffie.git_source import LocalSource, head_from_upload
from diffie.uploads import Upload, from_request

SPEC = ("sandbox:\n  image: shop\n  deploy: [\"true\"]\n  port: 8000\n"
        "flows:\n  - name: home\n    steps:\n      - goto: /\n")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "app"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / ".diffie.yml").write_text(SPEC)
    (path / "style.css").write_text("body { color: black; }\n")
    (path / "logo.bin").write_bytes(bytes(range(256)))
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "base")
    return path


def _work(repo: Path) -> None:
    (repo / "style.css").write_text("body { color: red; }\n")
    (repo / "new.txt").write_text("added\n")
    (repo / "logo.bin").write_bytes(bytes(range(255, -1, -1)))


def test_a_patch_of_uncommitted_work_becomes_the_head(tmp_path: Path, repo: Path) -> None:
    _work(repo)
    git(repo, "add", "-N", "new.txt")
    patch = git(repo, "diff", "--binary", "HEAD")
    git(repo, "reset", "-q")
    git(repo, "checkout", "--", ".")
    (repo / "new.txt").unlink()
    upload = from_request(patch=patch, bundle=None, max_bytes=100_000)
    assert upload is not None and upload.label.startswith("diff:")
    base_sha = git(repo, "rev-parse", "HEAD").strip()
    head = head_from_upload(upload, repo, base_sha, tmp_path / "head")
    assert head == upload.label
    assert (tmp_path / "head" / "style.css").read_text() == "body { color: red; }\n"
    assert (tmp_path / "head" / "new.txt").read_text() == "added\n"
    assert (tmp_path / "head" / "logo.bin").read_bytes() == bytes(range(255, -1, -1))
    assert git(repo, "status", "--porcelain") == ""


def test_a_patch_that_does_not_apply_or_escapes_is_refused(tmp_path: Path, repo: Path) -> None:
    base_sha = git(repo, "rev-parse", "HEAD").strip()
    stale = ("diff --git a/style.css b/style.css\n--- a/style.css\n+++ b/style.css\n"
             "@@ -1 +1 @@\n-body { color: blue; }\n+body { color: red; }\n")
    with pytest.raises(SourceError, match="does not apply to the base"):
        head_from_upload(Upload("diff", stale.encode()), repo, base_sha, tmp_path / "h1")
    escape = ("diff --git a/../../evil b/../../evil\nnew file mode 100644\n--- /dev/null\n"
              "+++ b/../../evil\n@@ -0,0 +1 @@\n+pwned\n")
    with pytest.raises(SourceError):
        head_from_upload(Upload("diff", escape.encode()), repo, base_sha, tmp_path / "a" / "h2")
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_a_bundle_head_is_checked_out_without_touching_the_repository(tmp_path: Path,
                                                                      repo: Path) -> None:
    base_sha = git(repo, "rev-parse", "HEAD").strip()
    clone = tmp_path / "agent"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    git(clone, "config", "user.email", "a@example.com")
    git(clone, "config", "user.name", "a")
    _work(clone)
    git(clone, "add", ".")
    git(clone, "commit", "-q", "-m", "work")
    head_sha = git(clone, "rev-parse", "HEAD").strip()
    git(clone, "bundle", "create", "-q", str(tmp_path / "w.bundle"), f"{base_sha}..HEAD")
    data = (tmp_path / "w.bundle").read_bytes()
    upload = from_request(patch=None, bundle=base64.b64encode(data).decode(), max_bytes=10**6)
    assert upload is not None and upload.format == "bundle"
    refs_before = git(repo, "for-each-ref")
    got = head_from_upload(upload, repo, base_sha, tmp_path / "head")
    assert got == head_sha
    assert (tmp_path / "head" / "new.txt").read_text() == "added\n"
    assert git(repo, "for-each-ref") == refs_before
    missing = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", head_sha])
    assert missing.returncode != 0                    # its objects stayed in the scratch repo
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    with pytest.raises(SourceError, match="does not fit this repository"):
        head_from_upload(upload, other, base_sha, tmp_path / "head2")


def test_what_the_request_may_carry() -> None:
    with pytest.raises(InputError, match="not both") as both:
        from_request(patch="diff --git a/x b/x\n", bundle="eA==", max_bytes=100)
    assert both.value.where == "bundle"
    with pytest.raises(InputError, match="DIFFIE_MAX_UPLOAD_BYTES") as big:
        from_request(patch="diff --git " + "x" * 200, bundle=None, max_bytes=100)
    assert big.value.code == "too_large"
    with pytest.raises(InputError, match="not a diff"):
        from_request(patch="hello", bundle=None, max_bytes=100)
    with pytest.raises(InputError, match="not base64"):
        from_request(patch=None, bundle="***", max_bytes=100)
    with pytest.raises(InputError, match="not a git bundle"):
        from_request(patch=None, bundle=base64.b64encode(b"PK\x03\x04").decode(), max_bytes=100)
    assert from_request(patch=None, bundle=None, max_bytes=100) is None


@pytest.fixture
def client(ctx: AppContext, repo: Path) -> Iterator[TestClient]:
    ctx.settings.repo_mode_sources = [str(repo.parent)]
    with TestClient(create_app(context=ctx)) as c:
        yield c


def test_the_api_records_a_patch_and_the_worker_source_applies_it(
        client: TestClient, ctx: AppContext, repo: Path, tmp_path: Path) -> None:
    _work(repo)
    patch = git(repo, "diff", "--binary")
    git(repo, "checkout", "--", ".")
    resp = client.post("/v1/runs", json={"repo": str(repo), "base": "main", "patch": patch})
    assert resp.status_code == 202, resp.text
    run_id = resp.json()["id"]
    change = run_store.change_input(ctx.db, run_id)
    assert change.upload is not None and change.head_rev == change.upload.label
    assert client.get(f"/v1/runs/{run_id}").json()["change"]["head"].startswith("diff:")
    base_sha, head = LocalSource(tmp_path / "cache").materialise(change, tmp_path / "b",
                                                                 tmp_path / "h")
    assert head == change.upload.label and len(base_sha) == 40
    assert (tmp_path / "h" / "style.css").read_text() == "body { color: red; }\n"
    assert (tmp_path / "b" / "style.css").read_text() == "body { color: black; }\n"

    both = client.post("/v1/runs", json={"repo": str(repo), "base": "main", "head": "main",
                                         "patch": patch})
    assert both.status_code == 422 and "leave out head" in both.text
    ctx.settings.max_upload_bytes = 10
    big = client.post("/v1/runs", json={"repo": str(repo), "base": "main", "patch": patch})
    assert big.status_code == 422 and "DIFFIE_MAX_UPLOAD_BYTES" in big.text
    nobase = client.post("/v1/runs", json={"repo": str(repo), "base": "nope", "patch": patch})
    assert nobase.status_code == 422
