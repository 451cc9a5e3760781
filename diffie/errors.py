"""Diffie's exception tree.

Every module that wraps an external library turns that library's errors into one of these
(``raise SandboxError(...) from exc``), so callers only ever catch Diffie's own types::

    DiffieError                      base of everything Diffie raises on purpose
    ├── ConfigError                  bad settings (environment, files)
    ├── SpecError                    an invalid .diffie.yml (carries file, line, field)
    ├── ImageError                   size/mode problems in the pixel diff
    ├── SandboxError                 libvirt/QEMU/guest-agent failures
    │   └── DeployError              a deploy command failed inside the guest
    ├── BrowserError                 Playwright could not start or drive the browser
    ├── SourceError                  git fetch/checkout of the change failed
    ├── GitHubError                  the GitHub API answered with an error
    │   └── GitHubUnavailable        GitHub is down or rate-limits us: retry later, lose nothing
    └── RunError                     the pipeline could not finish a run
        └── RunTimeout               a caller stopped waiting for a run (which goes on)
"""

from __future__ import annotations


class DiffieError(Exception):
    """Base class of every error Diffie raises on purpose."""


class ConfigError(DiffieError):
    """Settings are missing or inconsistent."""


class SpecError(DiffieError):
    """A .diffie.yml is invalid. ``str()`` names the file, line and field."""

    def __init__(self, message: str, *, file: str = "<spec>", line: int | None = None,
                 field: str | None = None) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.reason = message
        where = file + (f":{line}" if line is not None else "")
        what = f" ({field})" if field else ""
        super().__init__(f"{where}{what}: {message}")


class ImageError(DiffieError, ValueError):
    """Images cannot be compared (wrong mode, shape or dtype)."""


class SandboxError(DiffieError):
    """The VM sandbox failed (libvirt, QEMU, guest agent, image build)."""


class NoFreeSlot(SandboxError):
    """Every VM slot of this host is leased (and the lease was not to wait any longer)."""


class DeployError(SandboxError):
    """A deploy command failed in the guest."""

    def __init__(self, message: str, *, command: str = "", exit_code: int | None = None,
                 output_tail: str = "") -> None:
        self.command = command
        self.exit_code = exit_code
        self.output_tail = output_tail
        super().__init__(message)


class BrowserError(DiffieError):
    """The browser could not be started or driven."""


class SourceError(DiffieError):
    """The change's source could not be fetched or checked out."""


class GitHubError(DiffieError):
    """GitHub's API answered with an error."""

    def __init__(self, message: str, *, status: int | None = None, method: str = "",
                 path: str = "") -> None:
        self.status = status
        self.method = method
        self.path = path
        super().__init__(message)


class InputError(DiffieError):
    """What a user submitted is wrong: ``where`` names the input (repo, base, head, spec_path,
    ...), ``code`` is a short machine-readable kind, ``context`` adds details (file, line,
    field of a spec)."""

    def __init__(self, where: str, message: str, code: str = "value_error",
                 **context: object) -> None:
        self.where = where
        self.code = code
        self.context = context
        super().__init__(message)


class RunError(DiffieError):
    """The pipeline could not finish a run."""


class RunTimeout(RunError):
    """A caller stopped waiting for a run that has not finished (the run goes on)."""


class Unavailable(DiffieError):
    """A publisher's destination cannot take the result now (down, rate-limited, or another
    process is publishing to the same place). Retryable: the publish task runs again after
    ``retry_after`` seconds (when known) or its own backoff."""

    retry_after: float | None = None


class GitHubUnavailable(GitHubError, Unavailable):
    """GitHub could not be reached, kept answering 5xx, or rate-limited us for longer than we
    wait inline. Retryable: the caller keeps the result and publishes it later
    (``retry_after`` seconds, when GitHub said so)."""

    def __init__(self, message: str, *, status: int | None = None, method: str = "",
                 path: str = "", retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status, method=method, path=path)


class Busy(Unavailable):
    """Another process holds the lease of what we were about to publish; try again shortly."""

    def __init__(self, message: str, retry_after: float = 2.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)
