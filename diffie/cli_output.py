"""What ``diffie … --json`` prints on stdout: exactly one JSON object per invocation, whatever
happened, so a coding agent parses one thing and never reads stderr to learn what went wrong.

- a verdict (:class:`diffie.verdict.Verdict`) when a run was judged (``status`` pass, changed,
  fail or error; an ``error`` verdict carries its ``reason``) with ``report_path``, the report
  on this machine's disk, when it is there (``report_url`` needs a running server);
- :class:`Queued` when a run was submitted without ``--wait``; :class:`Cancelled` from
  ``diffie runs cancel``;
- :class:`ErrorResult` for everything else: bad input (a flag, a spec with its file, line
  and field), a run that ended without a verdict (cancelled, timed out), an infrastructure
  failure. ``error.code`` is one of :data:`ERROR_CODES`; ``error.hint`` says what to do next.

The schema of all three is committed as ``diffie/schemas/cli-output.schema.json`` (a test keeps
it equal to :func:`output_schema`) and printed by ``diffie schema --cli``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from diffie.errors import (
    BrowserError,
    ConfigError,
    DeployError,
    GitHubError,
    InputError,
    RunError,
    RunTimeout,
    SandboxError,
    SourceError,
    SpecError,
)
from diffie.render.schema import committed_text, write_text
from diffie.text import clip
from diffie.verdict import Verdict

POSITIONAL = frozenset({"run_id", "findings"})          # arguments without a flag: named in capitals
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "cli-output.schema.json"
MESSAGE_CHARS = 2000

ErrorCode = Literal["usage_error", "bad_input", "spec_error", "not_found", "config_error",
                    "source_error", "sandbox_error", "deploy_error", "browser_error",
                    "github_error", "run_error", "cancelled", "timeout", "interrupted", "error"]
ERROR_CODES: tuple[str, ...] = ErrorCode.__args__  # type: ignore[attr-defined]

HINTS: dict[str, str] = {
    "usage_error": "run the command with --help to see its flags",
    "bad_input": "fix the flag named in 'input' and run the command again",
    "spec_error": "fix the spec at 'file':'line' ('field') and run again; "
                  "'diffie spec check FILE' checks it without a run",
    "not_found": "'diffie runs list' shows the runs there are",
    "config_error": "fix the DIFFIE_* setting named in the message ('diffie status' shows them)",
    "source_error": "check that the repository and revisions exist and are readable",
    "sandbox_error": "the VM sandbox failed: 'diffie status' and 'diffie image check' say why",
    "deploy_error": "the deploy failed: read the command's output in the message",
    "browser_error": "Chromium could not run: 'make setup' installs it",
    "github_error": "GitHub answered with an error: check the app's credentials",
    "run_error": "the run could not finish: 'diffie runs show RUN' has its log",
    "cancelled": "the run was cancelled; submit it again to verify the change",
    "timeout": "the run is still going: 'diffie runs show RUN' later, or a longer --timeout",
    "interrupted": "the run goes on in the queue: 'diffie runs show RUN' later",
    "error": "see the message",
}


class CliError(BaseModel):
    """What went wrong, where, and what to do next."""

    code: ErrorCode
    message: str = Field(max_length=MESSAGE_CHARS)
    input: str | None = Field(default=None, description="the flag that is wrong (bad_input)")
    file: str | None = Field(default=None, description="the spec file (spec_error)")
    line: int | None = Field(default=None, description="its line, when known")
    field: str | None = Field(default=None, description="the spec's field, when known")
    hint: str = ""


class ErrorResult(BaseModel):
    """No verdict: the run could not be submitted, or ended without one."""

    status: Literal["error"] = "error"
    run_id: str | None = None
    error: CliError


class Queued(BaseModel):
    """A run submitted without ``--wait``: ``diffie runs show RUN_ID`` follows it."""

    status: Literal["queued"] = "queued"
    run_id: str
    id: str = Field(description="the same as run_id (older name)")


class Cancelled(BaseModel):
    """``diffie runs cancel RUN --json``: the run is cancelled."""

    status: Literal["cancelled"] = "cancelled"
    run_id: str


class ApprovedOut(BaseModel):
    """``diffie approve RUN --json``: the findings now approved."""

    status: Literal["approved"] = "approved"
    run_id: str
    approved: list[str]
    whole_run: bool


def error_of(exc: BaseException) -> CliError:
    """The :class:`CliError` of an exception Diffie raised (or an interrupt)."""
    code: ErrorCode
    extra: dict[str, Any] = {}
    message = str(exc)
    if isinstance(exc, SpecError):
        code = "spec_error"
        extra = {"file": exc.file, "line": exc.line, "field": exc.field}
    elif isinstance(exc, InputError):
        context = exc.context
        if {"file", "line", "field"} & set(context):
            code = "spec_error"
            extra = {k: context.get(k) for k in ("file", "line", "field")}
        else:
            code = "not_found" if exc.code == "not_found" else "bad_input"
        extra["input"] = exc.where.upper() if exc.where in POSITIONAL \
            else "--" + exc.where.replace("_", "-")
        message = f"{extra['input']}: {exc}"
    elif isinstance(exc, KeyboardInterrupt):
        code, message = "interrupted", "interrupted"
    else:
        code = _code_by_class(exc)
    if extra.get("line") is not None and not isinstance(extra["line"], int):
        extra["line"] = None
    for key in ("file", "field"):
        if extra.get(key) is not None:
            extra[key] = str(extra[key])
    return CliError(code=code, message=clip(message, MESSAGE_CHARS), hint=HINTS[code], **extra)


def _code_by_class(exc: BaseException) -> ErrorCode:
    table: list[tuple[type[BaseException], ErrorCode]] = [
        (DeployError, "deploy_error"), (SandboxError, "sandbox_error"),
        (BrowserError, "browser_error"), (SourceError, "source_error"),
        (GitHubError, "github_error"), (ConfigError, "config_error"), (RunTimeout, "timeout"),
        (RunError, "run_error")]
    for cls, code in table:
        if isinstance(exc, cls):
            return code
    return "error"


def error_json(error: CliError, run_id: str | None = None) -> str:
    return ErrorResult(run_id=run_id, error=error).model_dump_json(indent=2, exclude_none=True)


def failure(code: ErrorCode, message: str, run_id: str | None = None) -> str:
    """The JSON of an :class:`ErrorResult` with ``code``'s hint."""
    return error_json(CliError(code=code, message=clip(message, MESSAGE_CHARS), hint=HINTS[code]), run_id)


def queued_json(run_id: str) -> str:
    return Queued(run_id=run_id, id=run_id).model_dump_json()


def approved_json(run_id: str, approved: list[str], whole_run: bool) -> str:
    return ApprovedOut(run_id=run_id, approved=approved, whole_run=whole_run).model_dump_json()


def cancelled_json(run_id: str) -> str:
    return Cancelled(run_id=run_id).model_dump_json()


def output_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of what ``check``, ``verify``, ``runs cancel`` and
    ``approve`` print with ``--json``: a verdict, a queued, cancelled or approved run, or an
    error result."""
    defs: dict[str, Any] = {}
    refs = []
    for model in (Verdict, Queued, Cancelled, ApprovedOut, ErrorResult):
        schema = model.model_json_schema(mode="serialization", ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
        refs.append({"$ref": f"#/$defs/{model.__name__}"})
    verdict = defs["Verdict"]
    verdict.setdefault("properties", {})["report_path"] = {
        "type": "string", "description": "the report on this machine's disk"}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "diffie --json output", "oneOf": refs, "$defs": defs}


def schema_text() -> str:
    return committed_text(output_schema())


def write_schema(path: Path | None = None) -> Path:
    return write_text(schema_text(), path or SCHEMA_PATH)
