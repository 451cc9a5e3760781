"""What an operator (or a load balancer) asks a deployment: is it ready to verify changes?

:func:`readiness` checks, each with what to do when it fails:

- ``database``: a query answers;
- ``broker``: the Celery broker accepts a connection (and how many messages wait);
- ``workers``: at least one worker that takes runs heartbeated within ``DIFFIE_STALE_AFTER_S``
  (the ``workers`` table every worker's supervisor writes, on any host);
- ``slots``: VM slots free on the hosts of live workers. Informational: a deployment whose
  slots are all busy is ready (runs queue); it is not a reason to take the API out of service.

Everything here reads shared state (database, broker), so one API host answers for every
worker host.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text

from diffie import run_store
from diffie.app_context import AppContext
from diffie.db import Database
from diffie.models import Run, Slot, utcnow
from diffie.redact import redact

BROKER_TIMEOUT_S = 3.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fatal: bool = True          # False: reported, never what makes the deployment unready
    todo: str = ""              # what to do when it is not ok

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v != "" or k == "detail"}


@dataclass
class Worker:
    name: str
    hostname: str
    pid: int
    embedded: bool
    last_seen: datetime
    age_s: float


@dataclass
class Readiness:
    checks: list[Check] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    slots: dict[str, dict[str, int]] = field(default_factory=dict)   # host -> total/busy
    queued_runs: int = 0
    running_runs: int = 0
    broker_messages: int | None = None

    @property
    def ready(self) -> bool:
        return all(c.ok or not c.fatal for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "not ready",
            "checks": [c.as_dict() for c in self.checks],
            "workers": [{"name": w.name, "host": w.hostname, "pid": w.pid,
                         "embedded": w.embedded, "last_seen_s": round(w.age_s, 1)}
                        for w in self.workers],
            "slots": self.slots,
            "queue": {"queued_runs": self.queued_runs, "running_runs": self.running_runs,
                      "broker_messages": self.broker_messages},
        }


def live_workers(db: Database, within_s: float) -> list[Worker]:
    now = utcnow()
    rows = run_store.live_worker_rows(db, within_s=within_s)
    return [Worker(r.name, r.hostname, r.pid, r.embedded, r.last_seen,
                   (now - _aware(r.last_seen)).total_seconds()) for r in rows]


def slot_usage(db: Database, hosts: set[str] | None = None) -> dict[str, dict[str, int]]:
    """Per host: slot rows and how many are leased (``hosts``: only these)."""
    with db.session() as s:
        rows = s.execute(select(Slot.host, func.count(), func.count(Slot.holder))
                         .group_by(Slot.host)).all()
    return {host: {"total": int(total), "busy": int(busy)} for host, total, busy in rows
            if hosts is None or host in hosts}


def run_counts(db: Database) -> dict[str, int]:
    with db.session() as s:
        rows = s.execute(select(Run.status, func.count()).group_by(Run.status)).all()
    return {status: int(n) for status, n in rows}


def broker_depth(ctx: AppContext, queue: str | None = None) -> int:
    """Messages waiting on the runs' queue at the broker (connects; raises when it cannot)."""
    name = queue or ctx.settings.queue_name
    with ctx.celery.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2,
                               timeout=BROKER_TIMEOUT_S)
        channel = conn.default_channel
        try:
            return int(channel.queue_declare(queue=name, passive=True).message_count)
        except Exception as exc:          # no such queue yet (nothing was ever sent): empty
            if "NOT_FOUND" in str(exc) or "not found" in str(exc).lower():
                return 0
            raise


def readiness(ctx: AppContext) -> Readiness:
    settings = ctx.settings
    result = Readiness()
    started = time.monotonic()
    try:
        with ctx.db.session() as s:
            s.execute(text("SELECT 1"))
        counts = run_counts(ctx.db)
        result.queued_runs, result.running_runs = counts.get("queued", 0), counts.get("running", 0)
        result.checks.append(Check("database", True, f"answered in "
                                   f"{(time.monotonic() - started) * 1000:.0f} ms"))
    except Exception as exc:
        result.checks.append(Check(
            "database", False, f"{redact(settings.resolved_database_url())}: "
            f"{type(exc).__name__}: {redact(str(exc))[:300]}",
            todo="start the database or fix DIFFIE_DATABASE_URL"))
        return result                      # nothing else can be read
    broker = redact(settings.resolved_broker_url())
    try:
        result.broker_messages = broker_depth(ctx)
        result.checks.append(Check("broker", True, f"{broker}: {result.broker_messages} "
                                   f"message(s) waiting on {settings.queue_name!r}"))
    except Exception as exc:
        result.checks.append(Check("broker", False, f"{broker}: {type(exc).__name__}: "
                                   f"{redact(str(exc))[:300]}",
                                   todo="start the broker (Redis) or fix DIFFIE_BROKER_URL"))
    result.workers = live_workers(ctx.db, settings.stale_after_s)
    hosts = {w.hostname for w in result.workers}
    if result.workers:
        result.checks.append(Check("workers", True, f"{len(result.workers)} live worker(s) on "
                                   f"{len(hosts)} host(s): {', '.join(sorted(hosts))}"))
    else:
        result.checks.append(Check(
            "workers", False, f"no worker heartbeated in the last {settings.stale_after_s:g} s",
            todo="start one (diffie serve, diffie worker, or the diffie-worker systemd unit on "
                 "a worker host); queued runs wait until one does (diffie verify without "
                 "--server starts its own)"))
    result.slots = slot_usage(ctx.db, hosts)
    total = sum(v["total"] for v in result.slots.values())
    free = total - sum(v["busy"] for v in result.slots.values())
    if total == 0:
        result.checks.append(Check("slots", True, "no VM slots yet (a worker creates its "
                                   "host's slots at its first repo-mode run)", fatal=False))
    else:
        result.checks.append(Check(
            "slots", free > 0, f"{free} of {total} VM slot(s) free", fatal=False,
            todo="" if free else "every slot is busy: runs wait; add a worker host or raise "
                                  "DIFFIE_VM_SLOTS where memory allows"))
    return result


def _aware(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back: they are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
