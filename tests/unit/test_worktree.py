"""``diffie verify --worktree``: the working tree as a commit on top of HEAD, with git, leaving
the user's index, HEAD, branch and files as they were."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from diffie.errors import InputError
from diffie.worktree import REF_PREFIX, snapshot_worktree


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "app"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("*.log\nnode_modules/\n")
    (repo / "index.html").write_text("<h1>welcome</h1>\n")
    (repo / "old.css").write_text("h1 {}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def show(repo: Path, rev: str, path: str) -> str | None:
    done = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True,
                          text=True, check=False)
    return done.stdout if done.returncode == 0 else None


def test_the_working_tree_becomes_a_commit_on_head_and_nothing_of_the_users_moves(
        repo: Path) -> None:
    (repo / "index.html").write_text("<h1>hello</h1>\n")            # changed, not staged
    (repo / "new.js").write_text("console.log(1)\n")                # untracked
    (repo / "debug.log").write_text("ignored\n")                    # ignored
    (repo / "old.css").unlink()                                     # deleted
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    (repo / "staged.txt").write_text("changed after staging\n")     # the disk wins
    before = (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain"),
              git(repo, "diff", "--cached", "--name-only"))

    work = snapshot_worktree(repo)

    assert (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain"),
            git(repo, "diff", "--cached", "--name-only")) == before
    assert work.base == before[0]
    assert git(repo, "rev-parse", f"{work.head}^") == work.base
    assert show(repo, work.head, "index.html") == "<h1>hello</h1>\n"
    assert show(repo, work.head, "new.js") == "console.log(1)\n"
    assert show(repo, work.head, "staged.txt") == "changed after staging\n"
    assert show(repo, work.head, "debug.log") is None
    assert show(repo, work.head, "old.css") is None
    assert work.files == 4
    assert work.ref.startswith(REF_PREFIX)
    assert git(repo, "rev-parse", work.ref) == work.head
    assert git(repo, "log", "-1", "--format=%an", work.head) == "diffie"


def test_from_a_subdirectory_against_an_older_base(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    (repo / "index.html").write_text("<h1>second</h1>\n")
    git(repo, "commit", "-q", "-am", "second")
    (repo / "sub").mkdir()
    (repo / "sub" / "x.txt").write_text("x\n")
    work = snapshot_worktree(repo / "sub", base="HEAD~1")
    assert work.base == first
    assert git(repo, "rev-parse", f"{work.head}^") == git(repo, "rev-parse", "HEAD")
    assert work.files == 2                     # index.html (since base) and sub/x.txt


def test_nothing_to_verify_bad_base_no_repo_and_no_commit_say_which_input(
        repo: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no changes against HEAD") as nothing:
        snapshot_worktree(repo)
    assert nothing.value.where == "base"
    with pytest.raises(InputError, match="is not a revision") as bad:
        snapshot_worktree(repo, base="no-such-branch")
    assert bad.value.where == "base"
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InputError, match="not inside a git work tree") as not_repo:
        snapshot_worktree(plain)
    assert not_repo.value.where == "repo"
    git(plain, "init", "-q")
    with pytest.raises(InputError, match="has no commit yet"):
        snapshot_worktree(plain)
    assert not list((repo / ".git" / "refs").rglob("worktree/*"))
