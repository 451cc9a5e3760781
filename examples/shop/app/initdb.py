"""``python3 -m app.initdb``: create the schema and load the seed data, idempotently.

Uses SHOP_DATABASE_URL. ``--create`` also creates the database itself (connecting to the
``postgres`` maintenance database of the same server) when it does not exist yet.
"""

from __future__ import annotations

import argparse
import sys

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from app.config import DB_DIR, Config


def create_database(url: str) -> bool:
    """Create the database named in ``url`` if missing; True if it was created."""
    params = conninfo_to_dict(url)
    name = str(params.get("dbname") or params.get("user") or "postgres")
    admin = make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def init_db(url: str) -> None:
    with psycopg.connect(url) as conn:  # one transaction: all or nothing
        for name in ("schema.sql", "seed.sql"):
            conn.execute((DB_DIR / name).read_text(encoding="utf-8").encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m app.initdb", description=__doc__)
    parser.add_argument("--create", action="store_true", help="create the database if missing")
    args = parser.parse_args(argv)
    url = Config.from_env().database_url
    try:
        if args.create and create_database(url):
            print("initdb: created the database", file=sys.stderr)
        init_db(url)
    except psycopg.Error as exc:
        print(f"initdb: {exc}", file=sys.stderr)
        return 1
    print("initdb: schema and seed data are in place", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
