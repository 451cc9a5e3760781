"""Uncommitted work as a revision a worker can check out (``diffie verify --worktree``).

:func:`snapshot_worktree` commits the working tree of a local repository as it is on disk —
tracked files with their changes, deletions, and untracked files that ``.gitignore`` does not
exclude — on top of ``HEAD``, without touching the user's index, branch, ``HEAD`` or files:
the tree is built in a temporary index (``GIT_INDEX_FILE``), the commit object by ``git
commit-tree``, and a ref ``refs/diffie/worktree/<time>-<short>`` keeps it from garbage
collection until the user deletes it (``git for-each-ref refs/diffie`` lists them).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from diffie import gitrun
from diffie.errors import InputError, SourceError

# a fixed identity: the commit is Diffie's, not the user's (no signing, no hooks)
IDENTITY = {"GIT_AUTHOR_NAME": "diffie", "GIT_AUTHOR_EMAIL": "diffie@localhost",
            "GIT_COMMITTER_NAME": "diffie", "GIT_COMMITTER_EMAIL": "diffie@localhost"}
REF_PREFIX = "refs/diffie/worktree/"


class NoChanges(InputError):
    """The working tree is the base: there is nothing to verify."""


@dataclass(frozen=True)
class Worktree:
    """The working tree as a commit: ``head`` on top of ``base``, kept alive by ``ref``."""

    base: str
    head: str
    ref: str
    files: int         # paths that differ from base


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return gitrun.run(list(args), cwd=repo, env=env).stdout.decode("utf-8", "replace").strip()


def snapshot_worktree(repo: Path, base: str = "HEAD") -> Worktree:
    """Commit ``repo``'s working tree on top of ``HEAD`` (see the module doc), diffed against
    ``base`` (default ``HEAD``). Raises :class:`InputError` (``repo``/``base``) when ``repo``
    is not a work tree with a commit, ``base`` is unknown, or nothing differs from ``base``."""
    repo = Path(repo).expanduser().resolve()
    if not repo.is_dir():
        raise InputError("repo", f"{repo} is not a directory")
    try:
        top = Path(_git(repo, "rev-parse", "--show-toplevel"))
    except SourceError:
        raise InputError("repo", f"{repo} is not inside a git work tree (--worktree needs "
                                 "one: git init, commit once)") from None
    try:
        head = _git(top, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    except SourceError:
        raise InputError("repo", f"{top} has no commit yet: commit once, then --worktree "
                                 "verifies what changed since") from None
    try:
        base_rev = _git(top, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
    except SourceError:
        raise InputError("base", f"{base!r} is not a revision of {top}") from None
    index = Path(_git(top, "rev-parse", "--path-format=absolute", "--git-path", "index"))
    with tempfile.TemporaryDirectory(prefix="diffie-index-") as tmp:
        scratch = Path(tmp) / "index"
        if index.is_file():                 # its stat cache makes `add -A` fast
            shutil.copyfile(index, scratch)
        env = {"GIT_INDEX_FILE": str(scratch)}
        _git(top, "add", "--all", "--", ".", env=env)
        tree = _git(top, "write-tree", env=env)
    changed = _git(top, "diff-tree", "-r", "--name-only", "--no-renames", base_rev, tree)
    files = len([line for line in changed.splitlines() if line])
    if not files:
        raise NoChanges("base", f"the working tree of {top} has no changes against "
                                 f"{base} ({base_rev[:12]}): nothing to verify")
    message = f"diffie: the working tree on top of {head[:12]}"
    commit = _git(top, "commit-tree", tree, "-p", head, "-m", message, env=IDENTITY)
    ref = f"{REF_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{commit[:12]}"
    _git(top, "update-ref", ref, commit)
    return Worktree(base=base_rev, head=commit, ref=ref, files=files)


def patch_of(repo: Path, work: Worktree) -> str:
    """``git diff --binary`` from the worktree's base to its commit: the uploaded head a
    Diffie server applies to its own checkout of the base (:mod:`diffie.uploads`)."""
    out = gitrun.run(["diff", "--binary", "--no-color", "--no-ext-diff", work.base, work.head],
                     cwd=Path(repo).expanduser().resolve()).stdout
    return out.decode("utf-8", errors="surrogateescape")


def origin_url(repo: Path) -> str | None:
    """Where ``repo``'s ``origin`` remote points (the repository a server knows), if any."""
    try:
        return _git(Path(repo).expanduser().resolve(), "remote", "get-url", "origin") or None
    except SourceError:
        return None
