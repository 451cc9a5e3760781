"""The one way Diffie runs git, for every repository it reads or writes (a user's local
repository, the cache of fetched repositories, the corpus's generated ones).

- a clean environment: nothing inherited can point git at another repository or make it print
  credentials (``GIT_DIR``, ``GIT_TRACE``, ``GIT_CURL_VERBOSE``, ...); no system config, no
  prompts, no credential helper, no redirects followed over HTTP, C locale;
- a token only as ``http.extraHeader`` in the environment (``GIT_CONFIG_COUNT``), never on a
  command line or in a repository's config, and redacted from every error;
- a timeout; every failure a :class:`~diffie.errors.SourceError` naming the git command;
- :func:`locked_bare`: a bare repository created on first use, held under an exclusive lock
  (several workers share one cache).
"""

from __future__ import annotations

import base64
import fcntl
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from diffie.errors import SourceError
from diffie.redact import redact

TIMEOUT_S = 600.0

# inherited variables that could redirect git, or make it print the Authorization header
STRIPPED_ENV = ("GIT_TRACE", "GIT_CURL_VERBOSE", "GIT_REDACT", "GIT_DIR", "GIT_WORK_TREE",
                "GIT_INDEX_FILE", "GIT_CONFIG", "GIT_ASKPASS", "GIT_NAMESPACE", "GIT_OBJECT_",
                "GIT_ALTERNATE_", "GIT_COMMON_DIR", "GIT_SSL_NO_VERIFY", "GCM_")


def _basic(token: str) -> str:
    return base64.b64encode(f"x-access-token:{token}".encode()).decode()


def environment(token: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """git's environment: the clean one above, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(STRIPPED_ENV)}
    config = [("credential.helper", ""),          # no stored credentials, no prompts
              ("http.followRedirects", "false"),  # the token goes to this host only
              ("protocol.version", "2"),
              ("gc.autoDetach", "false")]
    if token:
        config.append(("http.extraHeader", f"Authorization: Basic {_basic(token)}"))
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "GCM_INTERACTIVE": "never",
                "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C",
                "GIT_CONFIG_COUNT": str(len(config))})
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    env.update(extra or {})
    return env


def run(args: Sequence[str], *, cwd: Path | None = None, git_dir: Path | None = None,
        token: str | None = None, env: dict[str, str] | None = None,
        input: bytes | None = None, stdout: IO[Any] | None = None,
        timeout: float = TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run ``git [--git-dir=...] args``; with ``check``, a non-zero exit raises SourceError
    with the end of git's stderr (secrets redacted)."""
    argv = ["git", *([f"--git-dir={git_dir}"] if git_dir is not None else []), *args]
    name = next((a for a in args if not a.startswith("-")), "")
    try:
        proc = subprocess.run(argv, cwd=cwd, env=environment(token, env), input=input,
                              stdout=stdout if stdout is not None else subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, check=False,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise SourceError("git is not installed (needed to check out the change)") from None
    except subprocess.TimeoutExpired:
        raise SourceError(f"git {name} took longer than {timeout:.0f} s") from None
    except OSError as exc:
        raise SourceError(f"cannot run git: {exc.strerror}") from None
    if check and proc.returncode != 0:
        raise SourceError(f"git {name} failed (exit {proc.returncode}): "
                          f"{stderr_tail(proc, token)}")
    return proc


def stderr_tail(proc: subprocess.CompletedProcess[bytes], token: str | None = None,
                limit: int = 1500) -> str:
    """The end of git's stderr, with the token (and its Basic form) redacted."""
    text = (proc.stderr or b"").decode("utf-8", "replace").strip()[-limit:]
    return redact(text, *([token, _basic(token)] if token else []))


@contextmanager
def locked_bare(path: Path) -> Iterator[Path]:
    """The bare repository at ``path``, created if needed, under an exclusive lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (path / "HEAD").exists():
                path.mkdir(parents=True, exist_ok=True)
                run(["init", "--bare", "--quiet"], git_dir=path)
            yield path
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
