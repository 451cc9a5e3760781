"""The composition root: the one module that names the real implementations and wires them.

- :func:`job_deps`: what the worker's job acts on (:class:`diffie.deps.JobDeps`) — Debian's
  Chromium (:class:`~diffie.browser.BrowserRunner`), libvirt VMs
  (:class:`~diffie.sandbox.libvirt.LibvirtSandbox`), the guest deployer, git sources;
- :func:`build_context`: a process's :class:`~diffie.app_context.AppContext` — Settings →
  Database (migrated) → job deps → the GitHub App (when configured) → the Celery app on demand.

The API, the CLI, the worker and the benchmarks start here; the job, the sandbox and the
browser never import this module, and tests replace any part by building their own
:class:`JobDeps` (``dataclasses.replace(ctx.deps, sandbox=...)``) with :mod:`diffie.fakes`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace

from celery import Celery

from diffie import callbacks
from diffie.app_context import AppContext
from diffie.artifact_store import store_of
from diffie.browser import BrowserRunner
from diffie.config import Settings
from diffie.db import Database
from diffie.deps import Deployer, FlowRunner, JobDeps, NoSandbox, SourceProvider
from diffie.git_source import LocalSource
from diffie.github import plugin as github
from diffie.migrations import upgrade
from diffie.sandbox.base import Sandbox
from diffie.sandbox.deploy import deploy
from diffie.sandbox.images import build_recipe
from diffie.sandbox.libvirt import LibvirtSandbox
from diffie.sandbox.recipe import LoadedRecipe
from workers import tasks
from workers.celery_app import make_celery


def job_deps(settings: Settings, db: Database | None, *,
             sources: dict[str, SourceProvider] | None = None,
             sandbox: Sandbox | None = None) -> JobDeps:
    """The real job deps of ``settings``; ``sandbox`` replaces libvirt (which needs ``db``:
    VM slots are leased there)."""
    if sandbox is None:
        sandbox = LibvirtSandbox(settings, db) if db is not None else NoSandbox(
            "repo mode needs the database (VM slots are leased there)")
    all_sources: dict[str, SourceProvider] = {"repo": LocalSource(settings.data_dir / "git")}
    all_sources.update(sources or {})

    def browser() -> AbstractContextManager[FlowRunner]:
        return BrowserRunner(settings)

    def build_image(loaded: LoadedRecipe, progress: Callable[[str], None]) -> str:
        return build_recipe(settings, loaded, progress=progress).key

    return JobDeps(settings=settings, browser=browser, sandbox=sandbox, deploy=deploy,
                   sources=all_sources,
                   build_image=build_image if isinstance(sandbox, LibvirtSandbox) else None)


def build_context(settings: Settings | None = None, *, migrate: bool = True) -> AppContext:
    """Settings → data directories → Database (migrated to the newest revision) → JobDeps →
    the GitHub App's source, publisher and permission check (when configured)."""
    settings = settings or Settings()
    settings.ensure_dirs()
    db = Database(settings.resolved_database_url())
    if migrate:
        upgrade(db.engine)
    ctx = AppContext(settings=settings, db=db, deps=job_deps(settings, db),
                     celery_factory=queue_app, artifact_store=store_of(settings))
    github.install(ctx)
    callbacks.install(ctx)
    return ctx


def with_deps(ctx: AppContext, *, sandbox: Sandbox | None = None,
              deploy: Deployer | None = None) -> AppContext:
    """``ctx`` with some job deps replaced (a test's fake sandbox and deployer), checked
    against their protocols."""
    if sandbox is not None:
        ctx.deps = replace(ctx.deps, sandbox=sandbox)
    if deploy is not None:
        ctx.deps = replace(ctx.deps, deploy=deploy)
    return ctx


def queue_app(ctx: AppContext) -> Celery:
    """The Celery app of ``ctx``'s settings; a worker started in this process (the embedded
    one) shares ``ctx``, and workers elsewhere build theirs with :func:`build_context`."""
    app = make_celery(ctx.settings, build_context)
    tasks.adopt_context(ctx)
    return app
