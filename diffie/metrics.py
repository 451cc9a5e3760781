"""Prometheus metrics of a whole deployment, read at scrape time from the shared database (and
the broker), so any API host answers for every worker host and nothing is lost when a process
restarts:

- ``diffie_runs{status,verdict}``: runs by status (queued, running, done, error, …) and verdict;
- ``diffie_queue_depth{source}``: runs queued in the database; messages waiting at the broker;
- ``diffie_workers`` / ``diffie_worker_hosts``: live workers that take runs, and their hosts;
- ``diffie_vm_slots{host,state}``: VM slots busy / free on live workers' hosts;
- ``diffie_phase_seconds{phase}``: a histogram of how long each phase of a run took
  (``run`` is the whole run on its worker);
- ``diffie_publish_retries_total{target}``: publish attempts (GitHub, callbacks) put back on
  the queue because the destination was unavailable;
- ``diffie_callbacks_total{outcome}``: callback deliveries (delivered, rejected);
- ``diffie_artifact_upload_bytes_total`` / ``_files_total``: what workers sent to the artifact
  store (``DIFFIE_ARTIFACT_STORE``); its time per run is the phase ``store``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from diffie import counters
from diffie.app_context import AppContext
from diffie.health import broker_depth, live_workers, slot_usage
from diffie.models import Run, RunPhase

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)


class DiffieCollector(Collector):
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        db, settings = self.ctx.db, self.ctx.settings
        runs = GaugeMetricFamily("diffie_runs", "Runs by status and verdict",
                                 labels=["status", "verdict"])
        queued = 0
        with db.session() as s:
            rows = s.execute(select(Run.status, Run.verdict_status, func.count())
                             .group_by(Run.status, Run.verdict_status)).all()
        for status, verdict, n in rows:
            runs.add_metric([status, verdict or ""], int(n))
            if status == "queued":
                queued += int(n)
        yield runs

        depth = GaugeMetricFamily("diffie_queue_depth", "Runs waiting for a worker",
                                  labels=["source"])
        depth.add_metric(["database"], queued)
        try:
            depth.add_metric(["broker"], broker_depth(self.ctx))
        except Exception:
            pass                               # /ready says why; a scrape still answers
        yield depth

        workers = live_workers(db, settings.stale_after_s)
        hosts = {w.hostname for w in workers}
        yield GaugeMetricFamily("diffie_workers", "Live workers that take runs",
                                value=len(workers))
        yield GaugeMetricFamily("diffie_worker_hosts", "Hosts with a live worker",
                                value=len(hosts))
        slots = GaugeMetricFamily("diffie_vm_slots", "VM slots on live workers' hosts",
                                  labels=["host", "state"])
        for host, use in sorted(slot_usage(db, hosts).items()):
            slots.add_metric([host, "busy"], use["busy"])
            slots.add_metric([host, "free"], use["total"] - use["busy"])
        yield slots

        yield self._phases()

        retries = CounterMetricFamily("diffie_publish_retries",
                                      "Publish attempts retried (destination unavailable)",
                                      labels=["target"])
        for label, value in counters.read(db, "publish_retries").items():
            retries.add_metric([label], value)
        yield retries
        callbacks = CounterMetricFamily("diffie_callbacks", "Callback deliveries by outcome",
                                        labels=["outcome"])
        for label, value in counters.read(db, "callbacks").items():
            callbacks.add_metric([label], value)
        yield callbacks
        uploaded = counters.read(db, "artifact_upload")
        for unit in ("bytes", "files"):
            yield CounterMetricFamily(f"diffie_artifact_upload_{unit}",
                                      f"Run files sent to the artifact store ({unit})",
                                      value=uploaded.get(unit, 0))

    def _phases(self) -> Metric:
        hist = HistogramMetricFamily("diffie_phase_seconds",
                                     "How long each phase of a run took", labels=["phase"])
        columns = [func.sum(case((RunPhase.seconds <= b, 1), else_=0)) for b in BUCKETS]
        with self.ctx.db.session() as s:
            rows = s.execute(select(RunPhase.phase, func.count(), func.sum(RunPhase.seconds),
                                    *columns).group_by(RunPhase.phase)).all()
        for phase, count, total, *cumulative in rows:
            buckets = [(str(float(b)), float(n or 0))
                       for b, n in zip(BUCKETS, cumulative, strict=True)]
            buckets.append(("+Inf", float(count)))
            hist.add_metric([phase], buckets, sum_value=float(total or 0.0))
        return hist


def render(ctx: AppContext) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DiffieCollector(ctx))
    return generate_latest(registry)
