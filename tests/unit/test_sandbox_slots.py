"""Slot leases in the database: distinct slots, waiting, release, dead holders reclaimed."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from diffie.db import Database
from diffie.errors import SandboxError
from diffie.models import Base, Slot
from diffie.sandbox import slots


@pytest.fixture(autouse=True)
def _own_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFIE_LOCK_DIR", str(tmp_path / "locks"))


def _db(path: Path) -> Database:
    database = Database(f"sqlite:///{path}")
    Base.metadata.create_all(database.engine)
    return database


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return _db(tmp_path / "slots.db")


def _dead_holder() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{slots.host_name()}/{proc.pid}.12345#dead:run-x"


def test_holder_round_trip_and_liveness() -> None:
    me = slots.Holder.mine("run-1")
    parsed = slots.Holder.parse(str(me))
    assert parsed is not None
    assert parsed == me and parsed.alive()
    dead = slots.Holder.parse(_dead_holder())
    assert dead is not None and not dead.alive()
    other_host = slots.Holder("elsewhere", 1, "1", "n", "")
    assert other_host.alive()                    # cannot tell: never reclaimed from here
    assert slots.holder_dead("garbage") and not slots.holder_dead(None)


def test_two_leases_get_two_slots_and_a_third_waits(db: Database) -> None:
    a = slots.acquire(db, 2, run_id="a", wait_s=1)
    b = slots.acquire(db, 2, run_id="b", wait_s=1)
    assert {a.index, b.index} == {0, 1}
    with pytest.raises(SandboxError, match="no free VM slot"):
        slots.acquire(db, 2, run_id="c", wait_s=0.5, poll_s=0.1)
    slots.release(db, a)
    c = slots.acquire(db, 2, run_id="c", wait_s=1)
    assert c.index == a.index
    with db.session() as s:
        rows = {r.index: r.holder for r in s.scalars(select(Slot))}
    assert rows[c.index] == str(c.holder) and rows[b.index] == str(b.holder)


def test_release_only_frees_our_own_lease(db: Database) -> None:
    a = slots.acquire(db, 1, wait_s=1)
    slots.release(db, a)
    b = slots.acquire(db, 1, wait_s=1)
    slots.release(db, a)                         # stale release: must not free b's slot
    with pytest.raises(SandboxError):
        slots.acquire(db, 1, wait_s=0.3, poll_s=0.1)
    slots.release(db, b)


def test_dead_holders_are_reclaimed(db: Database) -> None:
    slots.ensure_slots(db, 1)
    with db.session() as s:
        s.scalars(select(Slot)).one().holder = _dead_holder()
    lease = slots.acquire(db, 1, run_id="new", wait_s=2, poll_s=0.1)
    assert lease.index == 0 and lease.holder.run_id == "new"
    assert slots.reclaim_dead(db) == []          # a live holder is kept


def test_concurrent_acquisitions_never_share_a_slot(db: Database) -> None:
    got: list[int] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def take() -> None:
        try:
            lease = slots.acquire(db, 4, wait_s=10, poll_s=0.05)
            with lock:
                got.append(lease.index)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(got) == [0, 1, 2, 3]


def test_a_slot_leased_through_another_database_is_skipped(db: Database, tmp_path: Path) -> None:
    other = _db(tmp_path / "other.db")
    mine = slots.acquire(db, 2, wait_s=1)
    theirs = slots.acquire(other, 2, wait_s=1)       # same host: the host lock steers it
    assert {mine.index, theirs.index} == {0, 1}
    with pytest.raises(SandboxError):
        slots.acquire(other, 2, wait_s=0.5, poll_s=0.1)
    slots.release(db, mine)
    again = slots.acquire(other, 2, wait_s=2, poll_s=0.1)
    assert again.index == mine.index
    for lease, database in ((theirs, other), (again, other)):
        slots.release(database, lease)
