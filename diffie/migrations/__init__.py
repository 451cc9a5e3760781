"""Alembic migrations, applied on start-up with a programmatic Config (no alembic.ini).

``upgrade(db)`` brings any database to the newest revision. Concurrent start-ups (API, workers)
are serialised: a PostgreSQL advisory lock, or a lock file next to a SQLite database.

To write a new revision (developers)::

    python -m diffie.migrations.tool revision -m "what changed"   # autogenerate against models
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

HERE = Path(__file__).resolve().parent
_ADVISORY_KEY = 0x0D1FF1E   # any constant shared by every Diffie process


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(HERE / "versions"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@contextmanager
def _sqlite_lock(engine: Engine) -> Iterator[None]:
    db_path = engine.url.database
    if not db_path or db_path == ":memory:":
        yield
        return
    lock_path = Path(db_path).with_name(Path(db_path).name + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` (idempotent, safe to call from many processes)."""
    if engine.dialect.name == "sqlite":
        with _sqlite_lock(engine), engine.connect() as conn:
            command.upgrade(alembic_config(conn), revision)
            conn.commit()
        return
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_KEY})
            conn.commit()
        try:
            command.upgrade(alembic_config(conn), revision)
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_KEY})
                conn.commit()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
