"""``celery -A workers.main worker``: the Celery app of the environment's Settings, built on
first access (not at import), wired by the composition root. Celery's logging is Diffie's
(:mod:`diffie.logs`: ``DIFFIE_LOG_FORMAT``, every record naming its run)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import setup_logging

from diffie import logs
from diffie.composition import build_context
from diffie.config import Settings
from workers.celery_app import make_celery

_app: Celery | None = None


@setup_logging.connect
def _logging(loglevel: Any = None, **_: Any) -> None:
    level = loglevel if isinstance(loglevel, int) else \
        logging.getLevelName(str(loglevel or "WARNING").upper())
    logs.configure(Settings().log_format, level=level if isinstance(level, int) else
                   logging.WARNING)


def __getattr__(name: str) -> Celery:
    global _app
    if name in ("app", "celery"):
        if _app is None:
            _app = make_celery(Settings(), build_context)
        return _app
    raise AttributeError(name)
