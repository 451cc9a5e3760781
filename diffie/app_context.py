"""Everything a process needs, built once at start-up: Settings → Database (migrated) → Celery.

The API, the CLI and the worker each build one :class:`AppContext` and pass it down; nothing is
read from the environment at import time.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from diffie.config import Settings
from diffie.db import Database
from diffie.events import EventBus
from diffie.migrations import upgrade

if TYPE_CHECKING:
    from celery import Celery

    from diffie.runs import ChangeInput
    from diffie.sandbox.base import Sandbox

log = logging.getLogger(__name__)

VERIFY_TASK = "diffie.verify_run"

# Modules with an ``install(ctx)`` function, imported (when present) by ``build_context``: they
# subscribe run listeners (publishers) and register source providers for a change mode.
PLUGINS: tuple[str, ...] = ("diffie.github.plugin",)


class SourceProvider(Protocol):
    """Materialises a change's base and head trees (default for repo mode: ``diffie.source``)."""

    def materialise(self, change: ChangeInput, base_dest: Path,
                    head_dest: Path) -> tuple[str, str]:
        """Export both revisions into the (empty) directories; returns (base sha, head sha)."""
        ...


@dataclass
class AppContext:
    settings: Settings
    db: Database
    events: EventBus = field(default_factory=EventBus)
    # Tests may replace how runs reach the queue; by default a Celery message per run.
    enqueue_fn: Callable[[str], None] | None = None
    # Change mode ("github", ...) -> how to fetch its source; absent: a local path or plain URL.
    sources: dict[str, SourceProvider] = field(default_factory=dict)
    # The VM sandbox of repo mode; None: libvirt (diffie.sandbox.libvirt.LibvirtSandbox).
    sandbox: Sandbox | None = None
    # A GitHub user's role on a repository, (installation id, owner, repo, login) -> admin,
    # maintain, write, triage, read or none; set by the GitHub plugin (who may authorise runs).
    permissions: Callable[[int, str, str, str], str] | None = None
    _celery: Celery | None = None

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            from workers.celery_app import make_celery
            from workers.tasks import adopt_context

            self._celery = make_celery(self.settings)
            adopt_context(self)       # an in-process worker shares this context
        return self._celery

    def enqueue(self, run_id: str) -> None:
        """Put one run on the queue (the message carries only its id)."""
        if self.enqueue_fn is not None:
            self.enqueue_fn(run_id)
            return
        self.celery.send_task(VERIFY_TASK, args=[run_id], queue=self.settings.queue_name)

    def close(self) -> None:
        self.events.close()
        if self._celery is not None:
            self._celery.close()
        self.db.dispose()


def build_context(settings: Settings | None = None, *, migrate: bool = True) -> AppContext:
    """Settings → data directories → Database (migrated to the newest revision)."""
    settings = settings or Settings()
    settings.ensure_dirs()
    db = Database(settings.resolved_database_url())
    if migrate:
        upgrade(db.engine)
    ctx = AppContext(settings=settings, db=db)
    install_plugins(ctx)
    return ctx


def install_plugins(ctx: AppContext, names: tuple[str, ...] = PLUGINS) -> list[str]:
    """Import each plugin module that exists and call its ``install(ctx)``."""
    installed = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.install(ctx)
        installed.append(name)
    return installed
