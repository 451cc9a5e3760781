"""Shared fixtures: settings in a temporary data directory, a fresh PostgreSQL database, a Redis
database and queue of one's own, the API on real HTTP, an embedded Celery worker.

Services (override with environment variables):
- PostgreSQL: ``DIFFIE_TEST_PG`` (libpq conninfo), default ``host=127.0.0.1 port=5432 user=postgres``
- Redis: ``DIFFIE_TEST_REDIS`` (URL without a db number), default ``redis://127.0.0.1:6379``
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from diffie.app_context import AppContext
from diffie.composition import build_context
from diffie.config import Settings
from tests.paths import FIXTURES, REPO_ROOT

GITHUB_FIXTURES = FIXTURES / "github"
PG_CONNINFO = os.environ.get("DIFFIE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres")
REDIS_URL = os.environ.get("DIFFIE_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings that ignore the developer's DIFFIE_* environment for everything that matters."""
    values: dict[str, Any] = dict(
        data_dir=data_dir, database_url="", broker_url="", api_tokens=[],
        github_webhook_secret="", public_url="http://127.0.0.1:8000", max_body_bytes=1_000_000,
        noise_floor=False, heartbeat_s=1.0, stale_after_s=30.0, max_attempts=3,
        queue_name=f"diffie-test-{secrets.token_hex(4)}", github_app_id="",
        # URL mode through the API: the tests' own servers on random loopback ports
        url_mode_origins=["http://127.0.0.1:*"], url_signing_key="", repo_mode_sources=["/"])
    values.update(overrides)
    return Settings(**values)


TEST_ARTIFACTS = Path(os.environ.get("DIFFIE_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts")


@pytest.fixture
def test_artifacts(request: pytest.FixtureRequest) -> Path:
    """A folder kept after the run for what a person (or CI) should look at — screenshots of
    reports in a real browser: ``test-artifacts/<test name>/`` (``DIFFIE_TEST_ARTIFACTS``),
    emptied when the test starts."""
    folder: Path = TEST_ARTIFACTS / str(request.node.name).replace("/", "_")
    if folder.exists():
        for old in folder.iterdir():
            if old.is_file():
                old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def ctx(settings: Settings) -> Iterator[AppContext]:
    """A migrated SQLite context whose queue only records run ids (``ctx.enqueued``)."""
    context = build_context(settings)
    enqueued: list[str] = []
    context.enqueue_fn = enqueued.append
    context.enqueued = enqueued  # type: ignore[attr-defined]
    yield context
    context.close()


# --- PostgreSQL and Redis -----------------------------------------------------------------------

def _pg_admin() -> psycopg.Connection[Any]:
    return psycopg.connect(PG_CONNINFO, dbname="postgres", autocommit=True, connect_timeout=10)


def create_pg_database() -> tuple[str, str]:
    """A fresh, empty PostgreSQL database: (name, SQLAlchemy URL)."""
    name = f"diffie_test_{os.getpid()}_{secrets.token_hex(4)}"
    with _pg_admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(PG_CONNINFO)
    auth = str(info.get("user", "postgres")) + (f":{info['password']}" if info.get("password")
                                                else "")
    return name, (f"postgresql+psycopg://{auth}@{info.get('host', '127.0.0.1')}:"
                  f"{info.get('port', 5432)}/{name}")


def drop_pg_database(name: str) -> None:
    with _pg_admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def redis_test_url() -> str:
    """A Redis URL on a random database number (tests also use a queue name of their own)."""
    import redis

    url = f"{REDIS_URL}/{secrets.randbelow(15) + 1}"
    client = redis.Redis.from_url(url)
    client.ping()
    client.close()
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped afterwards) as a SQLAlchemy URL."""
    name, url = create_pg_database()
    yield url
    drop_pg_database(name)


def drop_redis_test_keys(url: str) -> None:
    """Remove the kombu keys of test queues (their names start with ``diffie-test-``)."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match="*diffie-test-*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = redis_test_url()
    yield url
    drop_redis_test_keys(url)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Both databases: "" (SQLite in the data directory) and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return ""
    url: str = request.getfixturevalue("pg_url")
    return url


# --- processes on real ports --------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """The API under uvicorn in a thread, on a free port of 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live_api() -> Iterator[Callable[[AppContext], LiveServer]]:
    """Start the API of a context on real HTTP: ``server = live_api(ctx)``; stopped afterwards."""
    from diffie.api import create_app

    servers: list[LiveServer] = []

    def start(context: AppContext) -> LiveServer:
        server = LiveServer(create_app(context=context)).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.2,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def settings_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """``settings`` (then ``overrides``) as the ``DIFFIE_*`` variables of a child process."""
    values = {**settings.model_dump(), **overrides}
    env: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | tuple):
            text = ",".join(str(v) for v in value)
        elif isinstance(value, dict):          # KEY=VALUE,KEY=VALUE (NoDecode map settings)
            text = ",".join(f"{k}={v}" for k, v in value.items())
        else:
            text = str(value)
        env[f"DIFFIE_{name.upper()}"] = text
    return env


def worker_process(settings: Settings, log: Path, **overrides: Any) -> subprocess.Popen[bytes]:
    """``celery -A workers.main worker --pool solo`` in a session of its own (kill it and
    its browsers with ``os.killpg``), configured by ``settings`` and ``overrides``."""
    env = dict(os.environ, **settings_env(settings, **overrides))
    with open(log, "ab") as out:           # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.main", "worker", "--pool", "solo",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    """SIGTERM a process group started with ``start_new_session``; SIGKILL it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def submit_repo(api: httpx.Client, repo: Path, base: str, head: str) -> str:
    """Submit a repo-mode run over the API; returns its id."""
    resp = api.post("/v1/runs", json={"repo": str(repo), "base": base, "head": head})
    assert resp.status_code == 202, resp.text
    run_id: str = resp.json()["id"]
    return run_id


def finished(api: httpx.Client, run_id: str, timeout: float = 180,
             interval: float = 0.2) -> dict[str, Any]:
    """Poll the API until the run is done, error or cancelled; returns the run."""
    def poll() -> dict[str, Any] | None:
        run: dict[str, Any] = api.get(f"/v1/runs/{run_id}").json()
        return run if run["status"] in ("done", "error", "cancelled") else None

    result: dict[str, Any] = wait_until(poll, timeout=timeout, interval=interval,
                                        what=f"run {run_id}")
    return result


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid",
               GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    proc = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True,
                          check=True)
    return proc.stdout.strip()


def make_repo(root: Path, revisions: list[dict[str, str]]) -> tuple[Path, list[str]]:
    """A git repository with one commit per ``{path: text}`` mapping; returns (path, shas)."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    shas: list[str] = []
    for files in revisions:
        for rel, text in files.items():
            path = repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"commit {len(shas)}")
        shas.append(git(repo, "rev-parse", "HEAD"))
    return repo, shas


class Site:
    """A tiny web site on a free port: ``pages`` maps a path to HTML; ``delay_s`` slows the
    responses of paths under ``/slow`` (set it at any time, e.g. to hold a worker mid-run)."""

    def __init__(self, pages: dict[str, str]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        site = self
        self.pages = dict(pages)
        self.delay_s = 0.0
        self.hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits.append(self.path)
                if site.delay_s and self.path.startswith("/slow"):
                    deadline = time.monotonic() + site.delay_s
                    while site.delay_s and time.monotonic() < deadline:
                        time.sleep(0.1)
                body = site.pages.get(self.path.split("?")[0])
                status = 200 if body is not None else 404
                data = (body if body is not None else "not found").encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Site:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.delay_s = 0
        self.server.shutdown()
        self.server.server_close()


PAGE = """<!doctype html><html><head><title>t</title>
<style>body{font-family:sans-serif;margin:20px} .box{width:200px;height:80px;background:#36c}</style>
</head><body><h1 id="title">Hello</h1><div class="box"></div>%s</body></html>"""
