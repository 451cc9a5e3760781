"""``celery -A workers.main worker``: the Celery app of the environment's Settings, built on
first access (not at import), wired by the composition root."""

from __future__ import annotations

from celery import Celery

from diffie.composition import build_context
from diffie.config import Settings
from workers.celery_app import make_celery

_app: Celery | None = None


def __getattr__(name: str) -> Celery:
    global _app
    if name in ("app", "celery"):
        if _app is None:
            _app = make_celery(Settings(), build_context)
        return _app
    raise AttributeError(name)
