"""Named leases in the database, shared by every process of a deployment.

``take(db, name, holder, for_s)`` is atomic on PostgreSQL and SQLite alike: an expired lease
is taken over with one conditional UPDATE, a new one is an INSERT that the primary key lets
only one process win. A lease ends when its holder releases it or when ``until`` passes (a
holder that died never blocks the others for longer than ``for_s``).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError

from diffie.db import Database
from diffie.models import Lease, utcnow


def take(db: Database, name: str, holder: str, for_s: float, *, renew: bool = True) -> bool:
    """Hold ``name`` for ``for_s`` seconds from now. True when ``holder`` has it: it was free,
    expired, or (``renew``) already ``holder``'s. ``renew=False`` makes a lease a period: the
    same holder gets it again only once it has expired."""
    now = utcnow()
    until = now + timedelta(seconds=for_s)
    expired = Lease.until < now
    with db.session() as s:
        taken = s.execute(update(Lease).where(
            Lease.name == name, or_(expired, Lease.holder == holder) if renew else expired)
            .values(holder=holder, until=until).execution_options(synchronize_session=False))
        if getattr(taken, "rowcount", 0):
            return True
        if s.get(Lease, name) is not None:
            return False
    try:
        with db.session() as s:
            s.add(Lease(name=name, holder=holder, until=until))
        return True
    except IntegrityError:
        return False                  # another process inserted it first


def release(db: Database, name: str, holder: str) -> None:
    with db.session() as s:
        s.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder)
                  .execution_options(synchronize_session=False))
