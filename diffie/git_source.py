"""The change's source: a git repository at a revision, materialised as a plain directory tree.

``checkout(repo, rev, dest)`` exports the tree with ``git archive`` (no working-copy state, no
``.git``), so base and head are two independent directories. ``repo`` is a local path (a work
tree or a bare repository) or a clone URL; URLs are fetched into a cache of bare repositories
reused across runs. Every failure is a :class:`SourceError` saying what was wrong.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from diffie import gitrun, uploads
from diffie.errors import SourceError
from diffie.uploads import Upload

_URL_RE = re.compile(r"^([a-z][a-z0-9+.-]*://|git@)", re.IGNORECASE)
_REV_RE = re.compile(r"^[A-Za-z0-9._/@^~{}-]{1,200}$")
GIT_TIMEOUT_S = 600


def is_url(repo: str) -> bool:
    return bool(_URL_RE.match(repo))


def _git(args: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return gitrun.run(args, cwd=cwd, check=False, timeout=GIT_TIMEOUT_S)


def _check_rev(rev: str) -> None:
    if not _REV_RE.match(rev) or rev.startswith("-"):
        raise SourceError(f"invalid revision {rev!r}")


def local_repo(repo: str) -> Path:
    """The repository's directory; a clear error when it is missing or not a git repository."""
    path = Path(repo).expanduser()
    if not path.is_dir():
        raise SourceError(f"repository {repo} does not exist (or is not a directory)")
    probe = _git(["rev-parse", "--git-dir"], cwd=path)
    if probe.returncode != 0:
        raise SourceError(f"{repo} is not a git repository")
    return path.resolve()


def resolve_rev(repo: Path, rev: str) -> str:
    """The full commit id of ``rev`` in ``repo``."""
    _check_rev(rev)
    proc = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=repo)
    if proc.returncode != 0:
        raise SourceError(f"revision {rev!r} not found in {repo}")
    return proc.stdout.decode().strip()


def read_file(repo: Path, rev: str, path: str) -> str | None:
    """A file's text at ``rev`` (``None`` when the revision has no such file)."""
    sha = resolve_rev(repo, rev)
    if path.startswith("/") or ".." in Path(path).parts:
        raise SourceError(f"invalid path {path!r}: it must be relative to the repository root")
    proc = _git(["cat-file", "-e", f"{sha}:{path}"], cwd=repo)
    if proc.returncode != 0:
        return None
    proc = _git(["show", f"{sha}:{path}"], cwd=repo)
    if proc.returncode != 0:
        raise SourceError(f"cannot read {path} at {rev}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode("utf-8", errors="replace")


def fetch(url: str, revs: list[str], cache_dir: Path) -> Path:
    """A bare repository in ``cache_dir`` holding ``revs`` of ``url`` (fetched once, reused;
    one fetch at a time per repository)."""
    key = hashlib.sha256(url.encode()).hexdigest()[:20]
    with gitrun.locked_bare(cache_dir / f"{key}.git") as bare:
        missing = []
        for rev in revs:
            _check_rev(rev)
            if _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                    cwd=bare).returncode:
                missing.append(rev)
        if missing:
            proc = _git(["fetch", "--quiet", "--no-tags", url, *missing], cwd=bare)
            if proc.returncode != 0:
                raise SourceError(f"cannot fetch {', '.join(missing)} from {_redact(url)}: "
                                  f"{gitrun.stderr_tail(proc, limit=500)}")
        return bare


def _redact(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", url)


def checkout(repo: Path, rev: str, dest: Path) -> str:
    """Export the tree of ``rev`` into ``dest`` (created, must be empty). Returns the commit id."""
    sha = resolve_rev(repo, rev)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise SourceError(f"cannot check out into {dest}: the directory is not empty")
    tar_path = dest.parent / f".{dest.name}.tar"
    try:
        with open(tar_path, "wb") as fh:
            gitrun.run(["archive", "--format=tar", sha], cwd=repo, stdout=fh,
                       timeout=GIT_TIMEOUT_S)
        with tarfile.open(tar_path) as tar:
            tar.extractall(dest, filter="data")
    except (OSError, tarfile.TarError) as exc:
        raise SourceError(f"cannot check out {rev} into {dest}: {exc}") from exc
    finally:
        tar_path.unlink(missing_ok=True)
    return sha


def open_repo(repo: str, revs: list[str], cache_dir: Path) -> Path:
    """A local repository holding ``revs``: the path itself, or a fetched cache for a URL."""
    if is_url(repo):
        return fetch(repo, revs, cache_dir)
    path = local_repo(repo)
    for rev in revs:
        resolve_rev(path, rev)
    return path


def head_from_upload(upload: Upload, repo: Path, base_sha: str, head_dest: Path) -> str:
    """The head tree in ``head_dest`` (created, empty): base plus uploaded work. Returns the
    head's name: the upload's label for a diff, the commit id for a bundle."""
    if upload.format == "diff":
        checkout(repo, base_sha, head_dest)
        uploads.apply_diff(upload.data, head_dest)
        return upload.label
    scratch = head_dest.parent / f".{head_dest.name}.bundle-repo"
    return checkout(scratch, uploads.unbundle(upload.data, repo, scratch), head_dest)


class LocalSource:
    """The default source provider: ``change.repo`` is a local path (or a plain clone URL);
    ``change.head_repo_url``, when set, is where the head revision lives (a fork)."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    def materialise(self, change: Any, base_dest: Path, head_dest: Path) -> tuple[str, str]:
        if not change.repo or not change.base_rev or not change.head_rev:
            raise SourceError("the change needs a repository and base and head revisions")
        upload = getattr(change, "upload", None)
        if upload is not None:            # the head is base + uploaded work (diffie.uploads)
            repo = open_repo(change.repo, [change.base_rev], self.cache_dir)
            base_sha = checkout(repo, change.base_rev, base_dest)
            return base_sha, head_from_upload(upload, repo, base_sha, head_dest)
        head_url = change.head_repo_url or change.repo
        same = head_url == change.repo
        revs = [change.base_rev] + ([change.head_rev] if same else [])
        base_repo = open_repo(change.repo, revs, self.cache_dir)
        head_repo = base_repo if same else open_repo(head_url, [change.head_rev], self.cache_dir)
        return (checkout(base_repo, change.base_rev, base_dest),
                checkout(head_repo, change.head_rev, head_dest))
