"""The Celery app, built from Settings: ``make_celery(settings)``.

Broker: the embedded SQLAlchemy transport on SQLite by default (no server), ``redis://`` at
scale. No result backend: a run's state lives in the database. Messages carry only a run id and
are acknowledged after the task ran (``acks_late``), and given back when a worker process dies
mid-task (``task_reject_on_worker_lost``); runs left ``running`` by a dead worker are put back
on the queue by the worker supervisor (:mod:`workers.supervisor`).

``celery -A workers.main worker`` runs a worker of the environment's Settings (the app is built
there, by the composition root, on first access).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery
from kombu.entity import Queue

from diffie.app_context import AppContext
from diffie.config import Settings
from workers.supervisor import Supervisor
from workers.tasks import register_tasks


def make_celery(settings: Settings, build: Callable[[Settings], AppContext]) -> Celery:
    """The app of ``settings``; ``build`` makes a worker process's context (the composition
    root's ``build_context``)."""
    broker = settings.resolved_broker_url()
    if broker.startswith("sqla+sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Celery("diffie", broker=broker, set_as_current=False)
    transport_options: dict[str, Any] = {}
    if broker.startswith(("redis://", "rediss://")):
        # An unacknowledged message comes back after this long (a worker died holding it).
        transport_options["visibility_timeout"] = settings.task_time_limit_s + 600
    if broker.startswith("sqla+sqlite"):
        # kombu hands these to SQLAlchemy's create_engine: wait for SQLite's lock, don't fail.
        transport_options["connect_args"] = {"timeout": 30}
    app.conf.update(
        task_default_queue=settings.queue_name,
        # A worker takes runs and publish jobs; ``-Q <queue>.publish`` makes a publish-only one.
        task_queues=[Queue(settings.queue_name), Queue(settings.publish_queue)],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        result_backend=None,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # task events (Flower, exporters) on a broker with fanout exchanges (Redis); the
        # embedded SQLite transport has none
        worker_send_task_events=not broker.startswith("sqla+"),
        task_send_sent_event=not broker.startswith("sqla+"),
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options,
        task_serializer="json",
        accept_content=["json"],
    )
    app.diffie_settings = settings
    app.diffie_build = build
    register_tasks(app, settings, build)
    app.steps["worker"].add(Supervisor)
    return app
