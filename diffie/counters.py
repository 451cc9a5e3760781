"""Deployment-wide counters in the database (every host adds to the same row), for what no
table already counts: publish retries per destination, callback outcomes."""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from diffie.db import Database
from diffie.models import Counter

log = logging.getLogger(__name__)


def bump(db: Database, name: str, label: str = "", by: int = 1) -> None:
    """Add ``by`` to ``name{label}``; never raises (a counter is not worth failing a job)."""
    label = label[:200]
    try:
        for _ in range(2):
            with db.session() as s:
                done = s.execute(update(Counter).where(Counter.name == name,
                                                       Counter.label == label)
                                 .values(value=Counter.value + by)
                                 .execution_options(synchronize_session=False))
                if done.rowcount:  # type: ignore[attr-defined]
                    return
            try:
                with db.session() as s:
                    s.add(Counter(name=name, label=label, value=by))
                return
            except IntegrityError:
                continue                   # another process created it: add to theirs
    except Exception:
        log.exception("counter %s{%s} not updated", name, label)


def read(db: Database, name: str) -> dict[str, int]:
    with db.session() as s:
        rows = s.execute(select(Counter.label, Counter.value).where(Counter.name == name)).all()
    return {label: int(value) for label, value in rows}
