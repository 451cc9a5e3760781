"""Tables: Change, Run, FindingRow, Artifact, Delivery, PullHead, Slot. Alembic migrations mirror
these."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class RunStatus(StrEnum):
    """A run's state (``Run.status``): waiting → queued → running → done | error | cancelled."""

    WAITING = "waiting"      # a pull request whose code runs only once a maintainer authorises it
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"            # judged: the verdict says pass, changed or fail (or error)
    ERROR = "error"          # could not finish: Run.reason says why
    CANCELLED = "cancelled"


RUN_STATUSES = tuple(s.value for s in RunStatus)
FINISHED = frozenset({RunStatus.DONE, RunStatus.ERROR, RunStatus.CANCELLED})


class Change(Base):
    """What to verify: two URLs (URL mode) or a repository at two revisions."""

    __tablename__ = "changes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    mode: Mapped[str] = mapped_column(String(16))            # url | repo | github
    base_url: Mapped[str | None] = mapped_column(Text)
    head_url: Mapped[str | None] = mapped_column(Text)
    repo: Mapped[str | None] = mapped_column(Text)            # local path or clone URL
    base_rev: Mapped[str | None] = mapped_column(String(128))
    head_rev: Mapped[str | None] = mapped_column(String(128))
    spec_text: Mapped[str | None] = mapped_column(Text)       # inline .diffie.yml, if given
    spec_path: Mapped[str] = mapped_column(String(512), default=".diffie.yml")
    # repo mode with uploaded work: the head is base + this (diffie.uploads: diff | bundle)
    patch: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    patch_format: Mapped[str | None] = mapped_column(String(8))
    # GitHub pull request (mode github)
    installation_id: Mapped[int | None] = mapped_column(Integer)
    gh_owner: Mapped[str | None] = mapped_column(String(200))
    gh_repo: Mapped[str | None] = mapped_column(String(200))
    pr_number: Mapped[int | None] = mapped_column(Integer)
    head_repo_url: Mapped[str | None] = mapped_column(Text)  # forks: the head repository
    title: Mapped[str | None] = mapped_column(Text)
    # the head is not trusted (a fork, or an author without push rights): its sandbox, deploy
    # commands and allowed origins come from the base revision's spec (diffie.spec_trust)
    untrusted_head: Mapped[bool] = mapped_column(default=False, server_default=false())
    author: Mapped[str | None] = mapped_column(String(200))   # the pull request's author
    # its runs wait for a maintainer's "Authorize run" (DIFFIE_GITHUB_REQUIRE_APPROVAL)
    approval_required: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    runs: Mapped[list[Run]] = relationship(back_populates="change")


class Run(Base):
    """One verification of a change. (waiting →) queued → running → done (verdict) | error
    (reason); waiting and queued runs may also end cancelled."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    change_id: Mapped[str] = mapped_column(ForeignKey("changes.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    phase: Mapped[str] = mapped_column(String(32), default="queued")   # finer progress
    verdict_status: Mapped[str | None] = mapped_column(String(16))     # pass|changed|fail|error
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    check_run_id: Mapped[int | None] = mapped_column(Integer)
    published: Mapped[bool] = mapped_column(default=False)
    approved: Mapped[bool] = mapped_column(default=False)
    authorized_by: Mapped[str | None] = mapped_column(String(200))   # who let a waiting run go
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # POSTed the run's result when it ends (diffie.callbacks), HMAC-signed, retried
    callback_url: Mapped[str | None] = mapped_column(Text)
    callback_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    change: Mapped[Change] = relationship(back_populates="runs")
    findings: Mapped[list[FindingRow]] = relationship(back_populates="run",
                                                   cascade="all, delete-orphan")
    artifacts: Mapped[list[Artifact]] = relationship(back_populates="run",
                                                     cascade="all, delete-orphan")


class FindingRow(Base):
    """One finding of a run, as stored (the verdict's own is :class:`diffie.verdict.Finding`)."""

    __tablename__ = "findings"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    finding_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    flow: Mapped[str | None] = mapped_column(String(100))
    viewport: Mapped[str | None] = mapped_column(String(100))
    step: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    run: Mapped[Run] = relationship(back_populates="findings")


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer, default=0)

    run: Mapped[Run] = relationship(back_populates="artifacts")


class Delivery(Base):
    """A received webhook delivery; (hook_id, delivery_id) is unique, and so is the hash of the
    signed body (``body_sha256``): a replay is ignored whatever its unsigned delivery id."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("hook_id", "delivery_id"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hook_id: Mapped[str] = mapped_column(String(64), default="")
    delivery_id: Mapped[str] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(32))
    body_sha256: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PullHead(Base):
    """The newest head of a pull request seen in a delivery, with the pull request's
    ``updated_at``: a delivery older than it (replayed, or late) starts and cancels nothing."""

    __tablename__ = "pull_heads"
    __table_args__ = (UniqueConstraint("gh_owner", "gh_repo", "pr_number"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gh_owner: Mapped[str] = mapped_column(String(200))       # lower case
    gh_repo: Mapped[str] = mapped_column(String(200))        # lower case
    pr_number: Mapped[int] = mapped_column(Integer)
    head_sha: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Slot(Base):
    """A VM slot on one hypervisor host. Leased with row locks, never in process memory."""

    __tablename__ = "slots"
    __table_args__ = (UniqueConstraint("host", "index"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(200))
    index: Mapped[int] = mapped_column(Integer)
    holder: Mapped[str | None] = mapped_column(String(200))    # "<worker>/<pid>:<run id>"
    leased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WorkerBeat(Base):
    """A live worker process: heartbeats here tell the CLI whether someone will take its run."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)   # "<host>/<pid>/<tag>"
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    embedded: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Approval(Base):
    """A visual change someone approved, remembered by its fingerprint for one subject (a
    pull request, a repository, a URL pair): a later run of the same subject showing the same
    change reports it as approved (:mod:`diffie.approvals`)."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("subject", "fingerprint"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(500), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(32))          # where it was approved
    finding_id: Mapped[str] = mapped_column(String(32))
    approved_by: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Lease(Base):
    """A named, time-bounded lease shared by every process of a deployment (one periodic
    sweep per deployment; one publisher at a time per pull request)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RunPhase(Base):
    """How long one phase of one run took (its worker's clock): /metrics' phase histograms."""

    __tablename__ = "run_phases"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    phase: Mapped[str] = mapped_column(String(32), index=True)
    seconds: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Counter(Base):
    """A deployment-wide counter (every host adds to the same row): /metrics' counters that
    no table already counts, e.g. publish retries per destination."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(200), primary_key=True, default="")
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class RunProgress(Base):
    """One progress line of a run (diffie.progress), numbered from 1 per run."""

    __tablename__ = "run_progress"
    __table_args__ = (UniqueConstraint("run_id", "seq"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    line: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
