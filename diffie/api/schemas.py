"""Request and response bodies of the HTTP API (what /docs shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from diffie.url_mode import strict_origin

MAX_SPEC_CHARS = 200_000


def _check_http_url(value: str | None) -> str | None:
    """A plain http(s) URL that every parser reads the same way (see diffie.url_mode)."""
    if value is None:
        return None
    strict_origin(value)
    return value


class RunRequest(BaseModel):
    """Submit a change. Two modes:

    - **URL mode**: ``base_url`` + ``head_url`` (two running deployments) and the flows, as a
      ``.diffie.yml`` text in ``spec`` (or the same document as a JSON object), or as ``flows``.
    - **Repo mode**: ``repo`` (a local git repository path), ``base`` and ``head`` revisions,
      or ``base`` and uploaded work as the head (``patch`` or ``bundle``); the spec is
      ``spec_path`` (default ``.diffie.yml``) in the head.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"base_url": "http://127.0.0.1:8001", "head_url": "http://127.0.0.1:8002",
         "spec": "flows:\n  - name: home\n    steps:\n      - goto: /\n      - screenshot: home\n"},
        {"repo": "/srv/repos/shop", "base": "main", "head": "feature"},
        {"repo": "/srv/repos/shop", "base": "main",
         "patch": "diff --git a/app.css b/app.css\n--- a/app.css\n+++ b/app.css\n..."},
    ]})

    base_url: str | None = Field(default=None, max_length=2000, description="URL mode: base.")
    head_url: str | None = Field(default=None, max_length=2000, description="URL mode: head.")
    spec: str | dict[str, Any] | None = Field(
        default=None, description="URL mode: the .diffie.yml text (or the document as JSON).")
    flows: list[dict[str, Any]] | None = Field(
        default=None, description="URL mode: just the flows (default viewports and options).")
    repo: str | None = Field(default=None, max_length=4000, description="Repo mode: git repo.")
    base: str | None = Field(default=None, max_length=200, description="Repo mode: base rev.")
    head: str | None = Field(default=None, max_length=200, description="Repo mode: head rev.")
    spec_path: str | None = Field(default=None, max_length=500,
                                  description="Repo mode: spec file in the head tree.")
    callback_url: str | None = Field(
        default=None, max_length=2000, description="POSTed the run's result (signed, "
        "retried) when it ends; an origin the operator allows (DIFFIE_CALLBACK_ORIGINS).")
    patch: str | None = Field(
        default=None, description="Repo mode without head: the head is base plus this patch "
        "(`git diff --binary BASE` output; uncommitted work). At most DIFFIE_MAX_UPLOAD_BYTES.")
    bundle: str | None = Field(
        default=None, description="Repo mode without head: base64 of a git bundle "
        "(`git bundle create FILE BASE..HEAD`) whose head is verified. At most "
        "DIFFIE_MAX_UPLOAD_BYTES once decoded.")
    title: str | None = Field(default=None, max_length=500, description="A label for reports.")

    @field_validator("base_url", "head_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return _check_http_url(value)

    @field_validator("spec")
    @classmethod
    def _spec_size(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(value, str) and len(value) > MAX_SPEC_CHARS:
            raise ValueError(f"the spec is longer than {MAX_SPEC_CHARS} characters")
        return value


class Links(BaseModel):
    self: str
    report: str
    artifacts: str


class RunAccepted(BaseModel):
    id: str
    status: Literal["queued"] = "queued"
    links: Links


class ChangeOut(BaseModel):
    mode: str
    base_url: str | None = None
    head_url: str | None = None
    repo: str | None = None
    base: str | None = None
    head: str | None = None
    spec_path: str | None = None
    title: str | None = None
    pr_number: int | None = None
    gh_owner: str | None = None
    gh_repo: str | None = None


class ArtifactOut(BaseModel):
    name: str
    media_type: str
    size: int
    url: str


class RunOut(BaseModel):
    id: str
    status: str = Field(description="waiting (for a maintainer's authorization) | queued | "
                        "running | done | error | cancelled")
    phase: str = Field(description="Finer progress while running (e.g. 'browse head 3/6').")
    verdict_status: str | None = Field(default=None, description="pass | changed | fail | error")
    verdict: dict[str, Any] | None = Field(
        default=None, description="The verdict (see /v1/schema/verdict.json) once finished.")
    reason: str | None = Field(default=None, description="Why the run ended in error.")
    attempts: int = 0
    worker: str | None = Field(default=None, description="The worker (node@host/pid/thread) "
                               "that took it last.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    change: ChangeOut
    links: Links
    artifacts: list[ArtifactOut] = Field(default_factory=list)


class CancelRequest(BaseModel):
    """``POST /v1/runs/{id}/cancel``: why (shown as the run's reason)."""

    reason: str | None = Field(default=None, max_length=500)


class ApproveRequest(BaseModel):
    """``POST /v1/runs/{id}/approve``: which visual findings (all of the run's when left out),
    why, and who (shown with the approval)."""

    findings: list[str] | None = Field(default=None, max_length=500)
    note: str | None = Field(default=None, max_length=500)
    by: str = Field(default="the API", max_length=200)


class ApproveOut(BaseModel):
    run_id: str
    approved: list[str]
    whole_run: bool = Field(description="every visual change of the run is approved now")


class FindingsPage(BaseModel):
    """``GET /v1/runs/{id}/findings``: findings as in the verdict, a page at a time."""

    run_id: str
    total: int = Field(description="findings (of the asked kind) in the verdict")
    findings: list[dict[str, Any]]
    next_cursor: str | None = Field(default=None, description="pass as cursor for the next page")
