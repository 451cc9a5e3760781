"""Database access: one short-lived connection per request (simple, and survives DB restarts)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

Row = dict[str, Any]


class Database:
    def __init__(self, url: str, *, connect_timeout: int = 5) -> None:
        self.url = url
        self.connect_timeout = connect_timeout

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Row]]:
        conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                               connect_timeout=self.connect_timeout)
        try:
            yield conn
        finally:
            conn.close()

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> Row | None:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchone()

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        with self.connect() as conn:
            conn.execute(sql, params)

    def ping(self) -> bool:
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False
