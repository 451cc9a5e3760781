"""VM slot leases in the database: never in process memory, since many workers share a host.

A slot is one (host, index) row. Leasing it writes a *holder* string into the row::

    <host>/<pid>.<process start ticks>#<nonce>:<run id>

PostgreSQL takes the row with ``SELECT ... FOR UPDATE SKIP LOCKED``; SQLite, which has no row
locks, claims it with one atomic compare-and-set ``UPDATE``. A holder is *dead* when it names
this host and its process (pid + start time, so a reused pid does not count) is gone; dead
holders' slots are reclaimed by the next lease or by the reaper.

A slot's domain name is fixed (its saved memory image demands it), so two Diffie databases on
one host would collide. Each lease therefore also holds a host-wide ``flock`` on
``<lock dir>/slot-<i>.lock``: a slot leased through another database is skipped, never shared.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from diffie.db import Database
from diffie.errors import NoFreeSlot, SandboxError
from diffie.models import Slot


def host_name() -> str:
    return socket.gethostname()[:100]


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    start: str
    nonce: str
    run_id: str = ""

    @classmethod
    def mine(cls, run_id: str = "") -> Holder:
        pid = os.getpid()
        return cls(host_name(), pid, process_start(pid) or "0", secrets.token_hex(4), run_id[:40])

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}.{self.start}#{self.nonce}:{self.run_id}"[:200]

    @property
    def process_tag(self) -> str:
        """``<pid>.<start>.<nonce>``: names this lease's files on disk."""
        return f"{self.pid}.{self.start}.{self.nonce}"

    @classmethod
    def parse(cls, text: str | None) -> Holder | None:
        if not text:
            return None
        try:
            ident, _, run_id = text.partition(":")
            host, _, rest = ident.rpartition("/")
            proc, _, nonce = rest.partition("#")
            pid_s, _, start = proc.partition(".")
            return cls(host, int(pid_s), start, nonce, run_id)
        except ValueError:
            return None

    def alive(self) -> bool:
        """False only when this is certainly a dead process of this host."""
        if self.host != host_name():
            return True    # cannot tell from here
        return process_start(self.pid) == self.start


def holder_dead(text: str | None) -> bool:
    holder = Holder.parse(text)
    if holder is None:
        return text is not None and text != ""    # unparseable: treat as garbage
    return not holder.alive()


def lock_dir() -> Path:
    return Path(os.environ.get("DIFFIE_LOCK_DIR", "/run/lock/diffie"))


class HostLock:
    """A host-wide ``flock`` on one slot; :meth:`close` is idempotent."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)      # closing the descriptor drops the flock


def try_host_lock(index: int) -> HostLock | None:
    """Take the host-wide lock of slot ``index`` without waiting; None if someone holds it."""
    d = lock_dir()
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return HostLock(fd)


def host_lock(index: int, wait_s: float) -> HostLock:
    """Take the host-wide lock of slot ``index``, waiting up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while (lock := try_host_lock(index)) is None:
        if time.monotonic() > deadline:
            raise SandboxError(f"VM slot {index} stays locked by another process on this host")
        time.sleep(0.5)
    return lock


@dataclass(frozen=True)
class Lease:
    pk: int
    host: str
    index: int
    holder: Holder
    lock: HostLock | None = field(default=None, compare=False)


def ensure_slots(db: Database, count: int, host: str | None = None) -> None:
    """Create rows for slots 0..count-1 of this host (concurrent callers are fine)."""
    host = host or host_name()
    with db.session() as s:
        have = set(s.scalars(select(Slot.index).where(Slot.host == host)))
    for index in range(count):
        if index in have:
            continue
        try:
            with db.session() as s:
                s.add(Slot(host=host, index=index))
        except IntegrityError:
            pass   # someone else created it


def _claim_postgres(s: Session, host: str, count: int, holder: str, now: datetime,
                    skip: set[int]) -> Slot | None:
    row = s.scalars(
        select(Slot).where(Slot.host == host, Slot.index < count, Slot.holder.is_(None),
                           Slot.index.not_in(skip))
        .order_by(Slot.index).limit(1).with_for_update(skip_locked=True)).first()
    if row is None:
        return None
    row.holder, row.leased_at, row.heartbeat_at = holder, now, now
    return row


def _claim_cas(s: Session, host: str, count: int, holder: str, now: datetime,
               skip: set[int]) -> Slot | None:
    free = s.scalars(select(Slot.pk).where(Slot.host == host, Slot.index < count,
                                           Slot.holder.is_(None), Slot.index.not_in(skip))
                     .order_by(Slot.index)).all()
    for pk in free:
        res = s.execute(update(Slot).where(Slot.pk == pk, Slot.holder.is_(None))
                        .values(holder=holder, leased_at=now, heartbeat_at=now))
        if res.rowcount == 1:   # type: ignore[attr-defined]
            return s.get(Slot, pk)
    return None


def reclaim_dead(db: Database, host: str | None = None) -> list[int]:
    """Release this host's slots whose holder process is dead; returns their indexes."""
    host = host or host_name()
    freed: list[int] = []
    with db.session() as s:
        rows = s.execute(select(Slot.pk, Slot.index, Slot.holder)
                         .where(Slot.host == host, Slot.holder.is_not(None))).all()
    for pk, index, text in rows:
        if holder_dead(text):
            with db.session() as s:
                res = s.execute(update(Slot).where(Slot.pk == pk, Slot.holder == text)
                                .values(holder=None, leased_at=None, heartbeat_at=None))
                if res.rowcount == 1:   # type: ignore[attr-defined]
                    freed.append(index)
    return freed


def acquire(db: Database, count: int, *, run_id: str = "", wait_s: float = 600.0,
            poll_s: float = 0.5) -> Lease:
    """Lease a free slot of this host, waiting up to ``wait_s`` (0: take one only if free now);
    raises :class:`NoFreeSlot` when none came free, SandboxError for other problems."""
    if count < 1:
        raise SandboxError("vm_slots must be at least 1")
    host = host_name()
    holder = Holder.mine(run_id)
    ensure_slots(db, count, host)
    postgres = db.engine.dialect.name == "postgresql"
    deadline = time.monotonic() + wait_s
    skip: set[int] = set()        # free in the database but locked on this host
    while True:
        row_pk: int | None = None
        index = -1
        try:
            with db.session() as s:
                claim = _claim_postgres if postgres else _claim_cas
                row = claim(s, host, count, str(holder), datetime.now(UTC), skip)
                if row is not None:
                    row_pk, index = row.pk, row.index
        except OperationalError:
            pass    # SQLite busy under contention: try again
        if row_pk is not None:
            lock = try_host_lock(index)
            lease = Lease(pk=row_pk, host=host, index=index, holder=holder, lock=lock)
            if lock is not None:
                return lease
            release(db, lease)       # leased through another database on this host
            skip.add(index)
            continue
        if reclaim_dead(db, host):
            continue
        if time.monotonic() > deadline:
            raise NoFreeSlot(f"no free VM slot on {host} after {wait_s:.0f} s "
                               f"({count} slot(s), all leased)")
        skip.clear()
        time.sleep(poll_s)


def release(db: Database, lease: Lease) -> None:
    """Give the slot back (only if we still hold it) and drop its host lock."""
    if lease.lock is not None:
        lease.lock.close()
    for attempt in range(20):
        try:
            with db.session() as s:
                s.execute(update(Slot).where(Slot.pk == lease.pk, Slot.holder == str(lease.holder))
                          .values(holder=None, leased_at=None, heartbeat_at=None))
            return
        except OperationalError:
            time.sleep(0.2 * (attempt + 1))
    raise SandboxError(f"could not release VM slot {lease.index} on {lease.host}")
