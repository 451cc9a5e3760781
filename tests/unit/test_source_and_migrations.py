"""diffie.git_source (git export of a revision) and the Alembic migrations (match the models)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from diffie.db import make_engine
from diffie.errors import SourceError
from diffie.git_source import LocalSource, checkout, fetch, local_repo, read_file, resolve_rev
from diffie.migrations import current_revision, upgrade
from diffie.models import Base
from diffie.run_store import ChangeInput
from tests.conftest import make_repo


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, list[str]]:
    return make_repo(tmp_path, [{"app/main.py": "print(1)\n", ".diffie.yml": "flows: []\n"},
                                {"app/main.py": "print(2)\n", "app/new.txt": "new\n"}])


def test_checkout_exports_each_revision(tmp_path: Path, repo: tuple[Path, list[str]]) -> None:
    path, shas = repo
    assert checkout(path, shas[0], tmp_path / "base") == shas[0]
    assert checkout(path, "main", tmp_path / "head") == shas[1]
    assert (tmp_path / "base/app/main.py").read_text() == "print(1)\n"
    assert not (tmp_path / "base/app/new.txt").exists()
    assert (tmp_path / "head/app/new.txt").read_text() == "new\n"
    assert not (tmp_path / "head/.git").exists()
    with pytest.raises(SourceError, match="not empty"):
        checkout(path, "main", tmp_path / "head")


def test_read_file_and_revisions(repo: tuple[Path, list[str]]) -> None:
    path, shas = repo
    assert read_file(path, shas[0], ".diffie.yml") == "flows: []\n"
    assert read_file(path, shas[0], "app/new.txt") is None
    assert resolve_rev(path, "HEAD~1") == shas[0]
    for bad in ("nope", "-x", "a b"):
        with pytest.raises(SourceError):
            resolve_rev(path, bad)
    with pytest.raises(SourceError, match="relative"):
        read_file(path, "main", "../etc/passwd")


def test_clear_errors_for_missing_repositories(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        local_repo(str(tmp_path / "missing"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(SourceError, match="not a git repository"):
        local_repo(str(tmp_path / "plain"))


def test_local_source_and_url_fetch(tmp_path: Path, repo: tuple[Path, list[str]]) -> None:
    path, shas = repo
    change = ChangeInput(run_id="r", mode="repo", repo=str(path), base_rev=shas[0],
                         head_rev=shas[1])
    got = LocalSource(tmp_path / "cache").materialise(change, tmp_path / "b", tmp_path / "h")
    assert got == (shas[0], shas[1])
    # a clone URL is fetched into a bare cache (reused the second time)
    bare = fetch(f"file://{path}", [shas[1]], tmp_path / "cache")
    assert resolve_rev(bare, shas[1]) == shas[1]
    assert fetch(f"file://{path}", [shas[1]], tmp_path / "cache") == bare
    with pytest.raises(SourceError, match="cannot fetch"):
        fetch(f"file://{path}", ["0" * 40], tmp_path / "cache")


def test_git_ignores_an_inherited_git_dir_and_fetches_hold_the_cache_lock(
        tmp_path: Path, repo: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    """One git runner for every repository: an inherited GIT_DIR (a git hook's environment)
    cannot point Diffie at another repository, and a fetch holds the cache's lock."""
    path, shas = repo
    other, other_shas = make_repo(tmp_path / "other", [{"x.txt": "other\n"}])
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    assert resolve_rev(path, "main") == shas[1]
    assert read_file(path, shas[0], ".diffie.yml") == "flows: []\n"
    bare = fetch(f"file://{path}", [shas[1]], tmp_path / "cache")
    assert (bare.parent / (bare.name + ".lock")).exists()
    assert resolve_rev(bare, shas[1]) == shas[1] != other_shas[0]


def test_migrations_create_exactly_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    upgrade(engine)                                   # idempotent
    assert current_revision(engine) == "0006"
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    engine.dispose()
