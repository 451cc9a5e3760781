"""``python -m benchmarks.hosts``: Diffie as API + Redis + PostgreSQL + an S3-compatible
artifact store + two worker hosts that share nothing else, a burst of changes, one worker host
killed mid-run.

Everything runs on this machine as separate processes, each "host" with its own data
directory, image cache, lock directory and Celery node name (``host-a@…``, ``host-b@…``):

- the API: ``diffie serve --no-worker`` (its own data directory; it never sees a worker's disk);
- two workers: ``celery -A workers.main worker --pool solo -n host-X@%h``;
- the store: ``python -m moto.server`` (a real S3 API over HTTP), ``DIFFIE_ARTIFACT_STORE``;
- the app: a small site whose ``/slow`` page answers after ``delay_s`` (runs overlap, and a
  kill lands mid-run).

``burst`` submits ``runs`` URL-mode changes through the API, kills host A's worker (and its
browsers: the whole process group, SIGKILL) while it holds a run, starts it again (as the
systemd unit's ``Restart=always`` would), waits for every run and then reads each run's report
and a screenshot through the API (fetched from the store). The last lines are::

    hosts: runs=<n> host_a=<n> host_b=<n> lost=<n> retried=<n> served=<n> progress=<n>
    store: seconds_per_run=<s> bytes_per_run=<n> files_per_run=<n>

(``host_X``: runs that host finished; ``lost``: runs not ``done`` with a pass verdict;
``retried``: runs taken more than once; ``served``: reports and screenshots the API served
from the store; ``progress``: runs whose progress lines the API's event stream gave;
``store``: the upload each worker does before it records a run as finished, from
``/metrics``.) Exits 1 unless both hosts finished runs,
nothing was lost, the killed run was retried and every report was served.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from diffie.artifact_store import S3Store, cache_locally
from diffie.artifacts import NAME_RE

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "diffie-runs"
TOKEN = "b3nch-" + "x" * 20
PAGE = ("<!doctype html><html><head><title>hosts</title><style>body{font-family:sans-serif;"
        "margin:20px}.box{width:200px;height:80px;background:#36c}</style></head><body>"
        "<h1 id='title'>Hello</h1><div class='box'></div></body></html>")
SPEC = ("timeout_ms: 60000\nflows:\n  - name: home\n    viewports: [desktop]\n    steps:\n"
        "      - goto: /slow\n      - screenshot: home\n")
Say = Callable[[str], None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Burst:
    runs: int
    by_host: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    served: int = 0
    progress: int = 0           # runs whose progress lines the API streamed
    store_seconds: float = 0.0
    store_bytes: int = 0
    store_files: int = 0
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        n = max(self.runs, 1)
        return [f"hosts: runs={self.runs} host_a={self.by_host.get('host-a', 0)} "
                f"host_b={self.by_host.get('host-b', 0)} lost={len(self.lost)} "
                f"retried={len(self.retried)} served={self.served} progress={self.progress}",
                f"store: seconds_per_run={self.store_seconds / n:.3f} "
                f"bytes_per_run={self.store_bytes // n} files_per_run={self.store_files // n}"]

    @property
    def ok(self) -> bool:
        return (not self.lost and not self.problems and self.served == self.runs
                and all(self.by_host.get(h, 0) > 0 for h in ("host-a", "host-b")))


class SlowSite:
    """``/`` and ``/slow`` (after ``delay_s``) on a free loopback port."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/slow"):
                    time.sleep(site.delay_s)
                body = PAGE.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


@contextmanager
def s3_server(work: Path) -> Iterator[str]:
    """A real S3 API (moto's server) on a free port with the bucket made; its endpoint URL.
    Credentials: the AWS_* variables of :func:`s3_env`."""
    port = free_port()
    proc = _process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    dict(os.environ), work / "s3.log")
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for("the S3 server", lambda: httpx.get(endpoint, timeout=2).status_code < 500, 60)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="diffie", aws_secret_access_key="diffie-secret")
        client.create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        _stop(proc)


def s3_env(endpoint: str, prefix: str) -> dict[str, str]:
    return {"DIFFIE_ARTIFACT_STORE": f"s3://{BUCKET}/{prefix}", "DIFFIE_S3_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "diffie", "AWS_SECRET_ACCESS_KEY": "diffie-secret"}


def burst(work: Path, *, database_url: str, redis_url: str, runs: int = 6,
          delay_s: float = 2.0, say: Say = print) -> Burst:
    """See the module doc. ``database_url``: an empty PostgreSQL database (SQLAlchemy URL);
    ``redis_url``: a Redis database of its own."""
    work.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        endpoint = stack.enter_context(s3_server(work))
        common = {**{k: v for k, v in os.environ.items() if not k.startswith("DIFFIE_")},
                  **s3_env(endpoint, secrets.token_hex(4)),
                  "DIFFIE_DATABASE_URL": database_url, "DIFFIE_BROKER_URL": redis_url,
                  "DIFFIE_QUEUE_NAME": f"diffie-hosts-{secrets.token_hex(4)}",
                  "DIFFIE_API_TOKENS": TOKEN, "DIFFIE_URL_SIGNING_KEY": secrets.token_hex(32),
                  "DIFFIE_URL_MODE_ORIGINS": "http://127.0.0.1:*", "DIFFIE_HEARTBEAT_S": "1",
                  "DIFFIE_STALE_AFTER_S": "6", "DIFFIE_NOISE_FLOOR": "false",
                  "DIFFIE_PARALLEL_SIDES": "false", "DIFFIE_LOG_FORMAT": "json"}
        port = free_port()
        api_env = {**common, "DIFFIE_DATA_DIR": str(work / "api" / "data"),
                   "DIFFIE_PUBLIC_URL": f"http://127.0.0.1:{port}"}
        api = _process([sys.executable, "-m", "diffie.cli", "serve", "--no-worker", "--port",
                        str(port)], api_env, work / "api.log")
        stack.callback(_stop, api)
        hosts: dict[str, subprocess.Popen[bytes] | None] = {}

        def start(name: str) -> None:
            home = work / name
            env = {**common, "DIFFIE_DATA_DIR": str(home / "data"),
                   "DIFFIE_IMAGE_CACHE_DIR": str(home / "images"),
                   "DIFFIE_LOCK_DIR": str(home / "locks"), "DIFFIE_PUBLIC_URL":
                   f"http://127.0.0.1:{port}"}
            hosts[name] = _process(
                [sys.executable, "-m", "celery", "-A", "workers.main", "worker", "--pool", "solo",
                 "-n", f"{name}@%h", "--loglevel", "INFO", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "-Q", common["DIFFIE_QUEUE_NAME"]],
                env, work / f"{name}.log")

        for name in ("host-a", "host-b"):
            start(name)
        def stop_hosts() -> None:
            for proc in hosts.values():
                _stop(proc)

        stack.callback(stop_hosts)
        site = SlowSite(delay_s)
        stack.callback(site.close)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        api_url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=api_url, headers=headers, timeout=30) as client:
            wait_for("both worker hosts in /ready", lambda: len(
                client.get("/ready").json().get("workers", [])) == 2, 120)
            say("api and both worker hosts are ready")
            ids = []
            for _ in range(runs):
                resp = client.post("/v1/runs", json={"base_url": site.url, "head_url": site.url,
                                                     "spec": SPEC})
                resp.raise_for_status()
                ids.append(resp.json()["id"])
            say(f"submitted {runs} runs")

            def held_by_a() -> str | None:
                for run_id in ids:
                    run = client.get(f"/v1/runs/{run_id}").json()
                    if run["status"] == "running" and str(run.get("worker")).startswith(
                            "host-a@") and run["phase"].startswith("browse"):
                        return str(run_id)
                return None

            killed = wait_for("host A to hold a run", held_by_a, 180)
            victim = hosts["host-a"]
            assert victim is not None
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(10)
            say(f"killed host A's worker while it ran {killed}; starting it again")
            start("host-a")

            def all_finished() -> list[dict[str, Any]] | None:
                got = [client.get(f"/v1/runs/{run_id}").json() for run_id in ids]
                return got if all(r["status"] in ("done", "error", "cancelled")
                                  for r in got) else None

            finished = wait_for("every run to finish", all_finished, 120 + 60 * runs, 1.0)
            result = Burst(runs=runs)
            for run in finished:
                host = str(run.get("worker") or "").split("@")[0]
                result.by_host[host] = result.by_host.get(host, 0) + 1
                if run["status"] != "done" or run["verdict_status"] != "pass":
                    result.lost.append(f"{run['id']}: {run['status']} {run.get('reason')}")
                if run["attempts"] > 1:
                    result.retried.append(run["id"])
                report = client.get(f"/v1/runs/{run['id']}/report")
                shot = next((a["name"] for a in run["artifacts"]
                             if a["name"].endswith(".png")), None)
                image = client.get(f"/v1/runs/{run['id']}/artifacts/{shot}") if shot else None
                events = client.get(f"/v1/runs/{run['id']}/events").text
                if "event: progress" in events and "phase: browse" in events:
                    result.progress += 1
                else:
                    result.problems.append(f"{run['id']}: no progress lines through the API")
                if report.status_code == 200 and "<html" in report.text.lower() and \
                        image is not None and image.status_code == 200 and \
                        image.content.startswith(b"\x89PNG"):
                    result.served += 1
                else:
                    result.problems.append(f"{run['id']}: report {report.status_code}, image "
                                           f"{image.status_code if image else 'none'}")
            if killed not in result.retried:
                result.problems.append(f"the killed run {killed} was not retried")
            metrics = client.get("/metrics").text
        for family in text_string_to_metric_families(metrics):
            for sample in family.samples:
                if sample.name == "diffie_phase_seconds_sum" and \
                        sample.labels.get("phase") == "store":
                    result.store_seconds = sample.value
                elif sample.name == "diffie_artifact_upload_bytes_total":
                    result.store_bytes = int(sample.value)
                elif sample.name == "diffie_artifact_upload_files_total":
                    result.store_files = int(sample.value)
        if not (work / "api" / "data" / "runs").is_dir():
            result.problems.append("the API served reports without fetching them from the store")
        for name in ("host-a", "host-b"):
            if (work / name / "data" / "runs").is_dir() is False and result.by_host.get(name):
                result.problems.append(f"{name} finished runs but has no run folder")
        return result


def store_only(folder: Path) -> int:
    """Upload one run folder to a fresh S3 server and fetch it back, as worker and API do:
    ``store: files=<n> bytes=<n> upload_s=<s> fetch_s=<s>``."""
    if not folder.is_dir():
        print(f"error: {folder} is not a run folder")
        return 2
    with tempfile.TemporaryDirectory(prefix="diffie-store-") as tmp, \
            s3_server(Path(tmp)) as endpoint:
        env = s3_env(endpoint, "bench")
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        store = S3Store(env["DIFFIE_ARTIFACT_STORE"], endpoint_url=endpoint)
        sent = store.upload("run", folder)
        started = time.monotonic()
        for path in folder.iterdir():
            if path.is_file() and NAME_RE.match(path.name):
                cache_locally(store, Path(tmp) / "api", "run", path.name)
        fetched = time.monotonic() - started
    print(f"store: files={sent.files} bytes={sent.bytes} upload_s={sent.seconds:.3f} "
          f"fetch_s={fetched:.3f}")
    return 0


@contextmanager
def scratch_database(admin: str) -> Iterator[str]:
    """A new PostgreSQL database (dropped after); its SQLAlchemy URL."""
    name = f"diffie_hosts_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(admin)
    try:
        yield (f"postgresql+psycopg://{params.get('user', 'postgres')}@"
               f"{params.get('host', '127.0.0.1')}:{params.get('port', 5432)}/{name}")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hosts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--pg", default="host=127.0.0.1 port=5432 user=postgres",
                        help="libpq conninfo of a PostgreSQL server (a database is made)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14",
                        help="a Redis database the benchmark may use")
    parser.add_argument("--store-only", metavar="RUN_DIR", type=Path, default=None,
                        help="only measure the store: upload this run folder (e.g. a VM run's, "
                             "$DIFFIE_DATA_DIR/runs/ID) and fetch every file back")
    args = parser.parse_args(argv)
    if args.store_only is not None:
        return store_only(args.store_only)
    with tempfile.TemporaryDirectory(prefix="diffie-hosts-") as tmp, \
            scratch_database(args.pg) as database_url:
        result = burst(Path(tmp), database_url=database_url, redis_url=args.redis,
                       runs=args.runs, say=lambda line: print(f"[hosts] {line}", flush=True))
    for problem in result.lost + result.problems:
        print(f"problem: {problem}")
    for line in result.lines():
        print(line)
    return 0 if result.ok and result.retried else 1


if __name__ == "__main__":
    sys.exit(main())
