"""Fetch a pull request's base and head commits into a cache of bare repositories.

One bare repository per ``owner/repo`` under the cache root, reused across runs: a commit
already there is not fetched again. Fetches go over HTTPS with the installation token sent as
``Authorization: Basic base64(x-access-token:<token>)`` through ``http.extraHeader`` set in the
git process's environment (``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``):
never on a command line, never in ``.git/config``, never in a log or an error message.

Forks: the head commit is fetched from the head repository's URL (falling back to the base
repository's ``refs/pull/<n>/head``, which GitHub keeps for every pull request).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from diffie import gitrun
from diffie.config import Settings
from diffie.errors import SourceError
from diffie.redact import redact

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,200}$")


def _check_name(value: str) -> str:
    if not _NAME.match(value) or value in (".", ".."):
        raise SourceError(f"invalid repository name {value!r}")
    return value


def _check_rev(rev: str) -> str:
    if not (_SHA.match(rev) or (_REF.match(rev) and ".." not in rev)):
        raise SourceError(f"invalid revision {rev!r}")
    return rev


class SourceCache:
    """Bare repositories keyed by ``owner/repo`` under ``root``."""

    def __init__(self, root: Path, *, timeout_s: float = 900.0) -> None:
        self.root = Path(root)
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceCache:
        return cls(settings.data_dir / "git-cache")

    def repo_dir(self, owner: str, repo: str) -> Path:
        return self.root / _check_name(owner).lower() / f"{_check_name(repo).lower()}.git"

    # -- git plumbing ---------------------------------------------------------------------

    def _run(self, args: Sequence[str], *, git_dir: Path, token: str | None = None,
             extra_env: dict[str, str] | None = None, check: bool = True) -> \
            subprocess.CompletedProcess[bytes]:
        return gitrun.run(args, git_dir=git_dir, token=token, env=extra_env, check=check,
                          timeout=self.timeout_s)

    @contextmanager
    def _locked(self, owner: str, repo: str) -> Iterator[Path]:
        """The bare repository, created if needed, under an exclusive lock (several workers
        share the cache)."""
        with gitrun.locked_bare(self.repo_dir(owner, repo)) as path:
            yield path

    def has_commit(self, git_dir: Path, sha: str) -> bool:
        proc = self._run(["cat-file", "-e", f"{_check_rev(sha)}^{{commit}}"], git_dir=git_dir,
                         check=False)
        return proc.returncode == 0

    # -- fetching ---------------------------------------------------------------------------

    def _fetch_one(self, git_dir: Path, url: str, sha: str, *, token: str | None,
                   pr_number: int | None) -> None:
        keep = f"refs/diffie/keep/{sha}"
        fetch = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", url]
        try:
            self._run([*fetch, f"+{sha}:{keep}"], git_dir=git_dir, token=token)
            return
        except SourceError as exc:
            # servers that refuse to serve a bare SHA: fetch the branches (and the PR ref)
            first = exc
        refspecs = ["+refs/heads/*:refs/diffie/heads/*"]
        if pr_number is not None:
            refspecs.append(f"+refs/pull/{int(pr_number)}/head:refs/diffie/pull/{int(pr_number)}")
        try:
            self._run([*fetch, *refspecs], git_dir=git_dir, token=token)
        except SourceError:
            raise first from None
        if not self.has_commit(git_dir, sha):
            raise SourceError(f"commit {sha} is not in {redact(url)}")
        self._run(["update-ref", keep, sha], git_dir=git_dir)

    def fetch(self, owner: str, repo: str, wanted: Sequence[tuple[str, str]], *,
              token: str | None, pr_number: int | None = None,
              fallback_url: str | None = None) -> Path:
        """Make every ``(url, sha)`` in ``wanted`` present in the owner/repo cache; a commit
        not found at its URL is looked for at ``fallback_url`` (with the PR ref). Returns the
        bare repository's path. The token is only sent to the host of the first URL."""
        if not wanted:
            raise SourceError("nothing to fetch")
        host = urlsplit(wanted[0][0]).netloc.lower()

        def token_for(url: str) -> str | None:
            return token if urlsplit(url).netloc.lower() == host else None

        with self._locked(owner, repo) as git_dir:
            for url, sha in wanted:
                _check_rev(sha)
                if self.has_commit(git_dir, sha):
                    log.info("source %s/%s@%s: cached", owner, repo, sha[:12])
                    continue
                log.info("source %s/%s@%s: fetching from %s", owner, repo, sha[:12], redact(url))
                try:
                    self._fetch_one(git_dir, url, sha, token=token_for(url), pr_number=pr_number)
                except SourceError:
                    if fallback_url is None or fallback_url == url:
                        raise
                    log.info("source %s/%s@%s: not at %s, trying %s", owner, repo, sha[:12],
                             redact(url), redact(fallback_url))
                    self._fetch_one(git_dir, fallback_url, sha, token=token_for(fallback_url),
                                    pr_number=pr_number)
            return git_dir

    def fetch_pull_request(self, *, owner: str, repo: str, base_url: str, base_sha: str,
                           head_url: str | None, head_sha: str, token: str | None,
                           pr_number: int | None = None) -> Path:
        """Fetch a pull request's base (from the base repository) and head (from the head
        repository, which differs for forks) into the base repository's cache."""
        return self.fetch(owner, repo, [(base_url, base_sha), (head_url or base_url, head_sha)],
                          token=token, pr_number=pr_number, fallback_url=base_url)

    # -- reading ----------------------------------------------------------------------------

    def checkout(self, owner: str, repo: str, rev: str, dest: Path) -> Path:
        """Write the tree of ``rev`` into ``dest`` (created; must be empty if it exists).
        Uses a private index, so concurrent checkouts from one cache do not interfere."""
        _check_rev(rev)
        git_dir = self.repo_dir(owner, repo)
        if not (git_dir / "HEAD").exists():
            raise SourceError(f"{owner}/{repo} has not been fetched")
        dest = Path(dest)
        if dest.exists() and any(dest.iterdir()):
            raise SourceError(f"checkout destination {dest} is not empty")
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="diffie-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            try:
                self._run(["read-tree", f"{rev}^{{tree}}"], git_dir=git_dir, extra_env=env)
                self._run([f"--work-tree={dest}", "checkout-index", "--all", "--force"],
                          git_dir=git_dir, extra_env=env)
            except SourceError:
                shutil.rmtree(dest, ignore_errors=True)
                raise
        return dest

    def list_files(self, owner: str, repo: str, rev: str) -> list[str]:
        """Every file path in ``rev`` (for mapping findings to annotations)."""
        _check_rev(rev)
        proc = self._run(["ls-tree", "-r", "--name-only", "-z", rev],
                         git_dir=self.repo_dir(owner, repo))
        return [p for p in proc.stdout.decode("utf-8", "replace").split("\0") if p]
