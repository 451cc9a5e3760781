"""``diffie … --json``: one JSON object on stdout whatever happened, valid against the
committed schema (diffie/schemas/cli-output.schema.json), with an error code per class."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from diffie import cli_output
from diffie.errors import (
    BrowserError,
    ConfigError,
    DeployError,
    DiffieError,
    GitHubError,
    InputError,
    RunError,
    RunTimeout,
    SandboxError,
    SourceError,
    SpecError,
)

VALIDATOR = Draft202012Validator(json.loads(cli_output.SCHEMA_PATH.read_text(encoding="utf-8")))


def valid(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(text)
    errors = sorted(VALIDATOR.iter_errors(data), key=str)
    assert not errors, [e.message for e in errors]
    return data


def test_the_committed_schema_is_the_generated_one() -> None:
    assert cli_output.SCHEMA_PATH.read_text(encoding="utf-8") == cli_output.schema_text(), \
        "regenerate: python -c 'from diffie.cli_output import write_schema; write_schema()'"
    Draft202012Validator.check_schema(cli_output.output_schema())


@pytest.mark.parametrize(("exc", "code"), [
    (SandboxError("no slot"), "sandbox_error"),
    (DeployError("exit 1", command="make"), "deploy_error"),
    (BrowserError("no chromium"), "browser_error"),
    (SourceError("no such revision"), "source_error"),
    (GitHubError("401", status=401), "github_error"),
    (ConfigError("DIFFIE_X is bad"), "config_error"),
    (RunTimeout("run r did not finish within 5 s"), "timeout"),
    (RunError("gave up"), "run_error"),
    (DiffieError("something"), "error"),
    (KeyboardInterrupt(), "interrupted"),
])
def test_every_error_class_has_its_code_and_a_hint(exc: BaseException, code: str) -> None:
    out = valid(cli_output.error_json(cli_output.error_of(exc), run_id="r1"))
    assert out["status"] == "error" and out["run_id"] == "r1"
    assert out["error"]["code"] == code and out["error"]["hint"]
    assert code in cli_output.ERROR_CODES


def test_a_spec_error_names_file_line_and_field() -> None:
    error = cli_output.error_of(SpecError("a goto step needs a url", file="x/.diffie.yml",
                                          line=7, field="flows[0].steps[0]"))
    out = valid(cli_output.error_json(error))["error"]
    assert (out["code"], out["file"], out["line"], out["field"]) == \
        ("spec_error", "x/.diffie.yml", 7, "flows[0].steps[0]")
    assert out["message"].startswith("x/.diffie.yml:7 (flows[0].steps[0]): ")


def test_bad_input_names_the_flag() -> None:
    out = valid(cli_output.error_json(cli_output.error_of(
        InputError("spec_path", "ci/x.yml not found at abc"))))["error"]
    assert out["code"] == "bad_input" and out["input"] == "--spec-path"
    assert out["message"] == "--spec-path: ci/x.yml not found at abc"
    spec = valid(cli_output.error_json(cli_output.error_of(
        InputError("spec", "bad", file="s.yml", line=3, field="flows"))))["error"]
    assert (spec["code"], spec["file"], spec["line"], spec["input"]) == \
        ("spec_error", "s.yml", 3, "--spec")


def test_long_messages_are_bounded() -> None:
    out = valid(cli_output.error_json(cli_output.error_of(RunError("x" * 10_000))))
    assert len(out["error"]["message"]) == cli_output.MESSAGE_CHARS


def test_queued_and_failure_objects_are_valid() -> None:
    queued = valid(cli_output.queued_json("abc"))
    assert queued == {"status": "queued", "run_id": "abc", "id": "abc"}
    cancelled = valid(cli_output.failure("cancelled", "cancelled by a user", run_id="abc"))
    assert cancelled["error"]["code"] == "cancelled"
