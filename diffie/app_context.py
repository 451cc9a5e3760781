"""Everything a process needs, built once at start-up by the composition root
(:func:`diffie.composition.build_context`): Settings, the Database, the job's deps, the
lifecycle event bus, and the queue.

The API, the CLI and the worker each build one :class:`AppContext` and pass it down; nothing is
read from the environment at import time. This module names no implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from diffie.artifact_store import ArtifactStore
from diffie.config import Settings
from diffie.db import Database
from diffie.deps import JobDeps, SourceProvider
from diffie.lifecycle import EventBus
from diffie.publishing import PUBLISH_TASK, Publisher

if TYPE_CHECKING:
    from celery import Celery

VERIFY_TASK = "diffie.verify_run"


@dataclass
class AppContext:
    settings: Settings
    db: Database
    # What the worker's job acts on (browser, sandbox, deployer, sources).
    deps: JobDeps
    events: EventBus = field(default_factory=EventBus)
    # Tests may replace how runs reach the queue; by default a Celery message per run.
    enqueue_fn: Callable[[str], None] | None = None
    # Where results are published beyond the database (the GitHub App adds "github").
    publishers: dict[str, Publisher] = field(default_factory=dict)
    # Tests may publish synchronously, (target, run id, kind); by default a Celery message.
    publish_fn: Callable[[str, str, str], None] | None = None
    # A GitHub user's role on a repository, (installation id, owner, repo, login) -> admin,
    # maintain, write, triage, read or none; set by the GitHub App (who may authorise runs).
    permissions: Callable[[int, str, str, str], str] | None = None
    # Where finished runs' files go for the API (diffie.artifact_store); None: the local folder.
    artifact_store: ArtifactStore | None = None
    # Builds the Celery app of this context on first use (the composition root's queue_app).
    celery_factory: Callable[[AppContext], Celery] | None = None
    _celery: Celery | None = None

    @property
    def sources(self) -> dict[str, SourceProvider]:
        """Change mode -> where its base and head come from (the GitHub App adds "github")."""
        return self.deps.sources

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            if self.celery_factory is None:
                raise RuntimeError("this context was built without a queue (celery_factory)")
            self._celery = self.celery_factory(self)
        return self._celery

    def enqueue(self, run_id: str) -> None:
        """Put one run on the queue (the message carries only its id)."""
        if self.enqueue_fn is not None:
            self.enqueue_fn(run_id)
            return
        self.celery.send_task(VERIFY_TASK, args=[run_id], queue=self.settings.queue_name)

    def publish(self, target: str, run_id: str, kind: str) -> None:
        """Queue one publish job (:mod:`diffie.publishing`) on the publish queue."""
        if self.publish_fn is not None:
            self.publish_fn(target, run_id, kind)
            return
        self.celery.send_task(PUBLISH_TASK, args=[target, run_id, kind],
                              queue=self.settings.publish_queue)

    def close(self) -> None:
        self.events.close()
        if self._celery is not None:
            self._celery.close()
        self.db.dispose()
