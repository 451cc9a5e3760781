"""The sample app and its corpus of changes, for tests and benchmarks (host side).

- :func:`load_manifest` reads ``examples/shop/changes/manifest.yml`` (or any folder of patches
  with a manifest in the same format) into validated :class:`ChangeCase` objects.
- :func:`materialize_repo` makes a git repository with the base tree as one commit and the
  patched tree as the next; commits are reproducible (fixed author, committer and dates), so the
  same tree always gets the same revision.
- :class:`ShopServer` runs one instance of the shop from a source tree on the host, on a free
  127.0.0.1 port, against a fresh PostgreSQL database that is dropped on exit.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import psycopg
import yaml
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from diffie import gitrun, yamlsafe
from diffie.errors import ConfigError, DiffieError, SourceError
from diffie.verdict import CHANGE_KINDS, ERROR_KINDS, FindingKind, Status

SHOP_DIR = Path(__file__).resolve().parent / "shop"
CHANGES_DIR = SHOP_DIR / "changes"
DEFAULT_PG_CONNINFO = "host=127.0.0.1 port=5432 user=postgres"

# Never part of the tree that is committed: the corpus itself, bytecode, virtualenvs.
_IGNORED = shutil.ignore_patterns("changes", "__pycache__", "*.pyc", ".git", ".venv", "*.egg-info")
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Diffie Examples",
    "GIT_AUTHOR_EMAIL": "examples@diffie.invalid",
    "GIT_COMMITTER_NAME": "Diffie Examples",
    "GIT_COMMITTER_EMAIL": "examples@diffie.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00",
}


# --- the manifest -----------------------------------------------------------------------------

class ManifestError(ConfigError):
    """A manifest.yml is invalid. ``str()`` names the file, the line and what is wrong."""

    def __init__(self, message: str, *, file: str, line: int | None = None) -> None:
        self.file = file
        self.line = line
        self.reason = message
        super().__init__(f"{file}{f':{line}' if line is not None else ''}: {message}")


class ChangeCase(BaseModel):
    """One change of the corpus: a patch and what a correct verdict says about it.

    ``kinds`` must all appear in the verdict (others may come with them); ``flows`` and
    ``viewports``, when set, are the only places findings may appear. ``noop`` and ``noise``
    changes are ``pass`` with no kinds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,80}$")
    patch: str
    category: Literal["regression", "noop", "noise"]
    expected: Status
    kinds: list[FindingKind] = Field(default_factory=list)
    flows: list[str] | None = None
    viewports: list[str] | None = None
    description: str = Field(min_length=1)
    notes: str = ""
    # a visual change: words the explanation (details.cause) of one of its findings contains
    expect_cause: list[str] = Field(default_factory=list)
    patch_path: Path = Path()          # resolved by load_manifest
    line: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ChangeCase:
        kinds = set(self.kinds)
        if self.category in ("noop", "noise") and (self.expected != "pass" or kinds):
            raise ValueError(f"a {self.category} change must expect pass with no kinds")
        if self.expected == "pass" and kinds:
            raise ValueError("a change expected to pass cannot list finding kinds")
        if self.expected == "changed" and (not kinds or not kinds <= CHANGE_KINDS):
            raise ValueError(
                f"a change expected 'changed' lists only {sorted(CHANGE_KINDS)}, at least one")
        if self.expected == "fail" and not kinds & ERROR_KINDS:
            raise ValueError(f"a change expected 'fail' lists at least one of {sorted(ERROR_KINDS)}")
        if len(kinds) != len(self.kinds):
            raise ValueError("kinds has duplicates")
        return self

    @property
    def is_regression(self) -> bool:
        return self.category == "regression"


def load_manifest(changes_dir: Path) -> list[ChangeCase]:
    """Read and validate ``<changes_dir>/manifest.yml``; every patch it names must exist.

    Raises :class:`ManifestError` naming the file, the line and the problem.
    """
    path = Path(changes_dir) / "manifest.yml"
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest: {exc.strerror or exc}", file=file) from exc
    try:
        root, data = yamlsafe.load(text)
    except yaml.YAMLError as exc:
        message, line = yamlsafe.yaml_problem(exc)
        raise ManifestError(message, file=file, line=line) from exc
    lines = yamlsafe.line_map(root)
    if not isinstance(data, dict) or not isinstance(data.get("changes"), list):
        raise ManifestError("the manifest must be a mapping with a 'changes' list", file=file, line=1)
    if data.get("version", 1) != 1:
        raise ManifestError(f"unsupported manifest version {data.get('version')!r}", file=file,
                            line=lines.get(("version",)))
    unknown = sorted(set(data) - {"version", "changes"})
    if unknown:
        raise ManifestError(f"unknown top-level field(s): {', '.join(unknown)}", file=file,
                            line=lines.get((unknown[0],)))
    cases: list[ChangeCase] = []
    seen: dict[str, int | None] = {}
    for i, raw in enumerate(data["changes"]):
        line = lines.get(("changes", i))
        if not isinstance(raw, dict):
            raise ManifestError(f"changes[{i}] must be a mapping", file=file, line=line)
        try:
            case = ChangeCase.model_validate({**raw, "line": line})
        except ValidationError as exc:
            loc, msg = yamlsafe.validation_problem(exc)
            where = yamlsafe.field_name(("changes", i, *loc))
            line_of = yamlsafe.line_for(lines, ("changes", i, *loc[:1])) if loc else line
            raise ManifestError(f"{where}: {msg}", file=file, line=line_of or line) from exc
        if case.id in seen:
            raise ManifestError(f"duplicate change id {case.id!r} (first at line {seen[case.id]})",
                                file=file, line=line)
        seen[case.id] = line
        patch_path = (Path(changes_dir) / case.patch).resolve()
        if Path(changes_dir).resolve() not in patch_path.parents:
            raise ManifestError(f"changes[{i}].patch must be inside {changes_dir}", file=file,
                                line=lines.get(("changes", i, "patch"), line))
        if not patch_path.is_file():
            raise ManifestError(f"changes[{i}].patch: no such file {case.patch!r}", file=file,
                                line=lines.get(("changes", i, "patch"), line))
        cases.append(case.model_copy(update={"patch_path": patch_path}))
    if not cases:
        raise ManifestError("the manifest lists no changes", file=file, line=lines.get(("changes",)))
    return cases


# --- git repositories of base + change --------------------------------------------------------

def _git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    done = gitrun.run(args, cwd=repo, env=_GIT_ENV, input=stdin, timeout=120)
    return done.stdout.decode("utf-8", "replace")


def materialize_repo(app_dir: Path, patch: Path | None, dest: Path) -> tuple[str, str]:
    """Create a git repository at ``dest``: the tree of ``app_dir`` committed as base, then
    ``patch`` applied (``git apply``) and committed as head. Returns ``(base_rev, head_rev)``.

    ``dest`` must not exist or be empty. ``changes/``, bytecode and ``.git`` are not copied.
    With ``patch=None`` head is an empty commit on top of base. Commits have a fixed author,
    committer and date, so one tree always gives one revision. Raises :class:`SourceError`.
    """
    app_dir, dest = Path(app_dir), Path(dest)
    if not app_dir.is_dir():
        raise SourceError(f"no app directory at {app_dir}")
    if dest.exists() and any(dest.iterdir()):
        raise SourceError(f"{dest} exists and is not empty")
    patch_text: bytes | None = None
    if patch is not None:
        try:
            patch_text = Path(patch).read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read the patch {patch}: {exc.strerror or exc}") from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(app_dir, dest, ignore=_IGNORED, dirs_exist_ok=True)
    _git(dest, "init", "-q", "-b", "main")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "--no-verify", "-m", "base")
    base = _git(dest, "rev-parse", "HEAD").strip()
    if patch_text is None:
        _git(dest, "commit", "-q", "--no-verify", "--allow-empty", "-m", "head: no change")
    else:
        try:
            _git(dest, "apply", "--index", "--whitespace=nowarn", "-", stdin=patch_text)
        except SourceError as exc:
            raise SourceError(f"the patch {Path(patch or '').name} does not apply: {exc}") from exc
        _git(dest, "commit", "-q", "--no-verify", "-m", f"head: {Path(patch or '').stem}")
    head = _git(dest, "rev-parse", "HEAD").strip()
    return base, head


# --- running the shop on the host -------------------------------------------------------------

class ShopServerError(DiffieError):
    """The shop could not be started (database, process or health check)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ShopServer:
    """Run the shop from ``source_dir`` on ``127.0.0.1:<free port>`` with its own database::

        with ShopServer(SHOP_DIR) as shop:
            urllib.request.urlopen(shop.url + "/health")
            print(shop.log_text())

    On enter: create a fresh database (psycopg, ``pg_conninfo``), load the schema and seed data
    with the app's own ``python -m app.initdb``, start ``python -m app`` and wait for ``/health``.
    On exit: stop the process (SIGTERM, then SIGKILL) and drop the database. The server's
    stdout and stderr go to ``log_path``.
    """

    def __init__(self, source_dir: Path, *, pg_conninfo: str = DEFAULT_PG_CONNINFO,
                 python: str = sys.executable, startup_timeout_s: float = 30.0,
                 env: dict[str, str] | None = None, log_path: Path | None = None) -> None:
        self.source_dir = Path(source_dir).resolve()
        self.pg_conninfo = pg_conninfo
        self.python = python
        self.startup_timeout_s = startup_timeout_s
        self.extra_env = dict(env or {})
        self.database = f"shop_test_{os.getpid()}_{secrets.token_hex(4)}"
        self.port = 0
        self._log_path = log_path
        self._own_log = log_path is None
        self._proc: subprocess.Popen[bytes] | None = None
        self._db_created = False

    # ---- public surface ----

    @property
    def url(self) -> str:
        if not self.port:
            raise ShopServerError("the shop is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        """libpq conninfo of this server's database (what SHOP_DATABASE_URL is set to)."""
        return make_conninfo(self.pg_conninfo, dbname=self.database)

    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            raise ShopServerError("the shop has not been started")
        return self._log_path

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except (OSError, ShopServerError):
            return ""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ---- lifecycle ----

    def __enter__(self) -> ShopServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        if not (self.source_dir / "app").is_dir():
            raise ShopServerError(f"{self.source_dir} has no app/ package")
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="shop-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._create_database()
        env = self._env()
        init = subprocess.run([self.python, "-m", "app.initdb"], cwd=self.source_dir, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        self._append_log("initdb", init.stdout + init.stderr)
        if init.returncode != 0:
            raise ShopServerError(f"initdb failed ({init.returncode}): {init.stderr.strip()[-2000:]}")
        self.port = free_port()
        env["SHOP_PORT"] = str(self.port)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen([self.python, "-m", "app"], cwd=self.source_dir, env=env,
                                          stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_healthy()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._db_created:
            self._drop_database()
        if self._own_log and self._log_path is not None and os.environ.get("DIFFIE_KEEP_LOGS") != "1":
            self._log_path.unlink(missing_ok=True)

    # ---- helpers ----

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
        env.update({"SHOP_DATABASE_URL": self.database_url, "SHOP_HOST": "127.0.0.1",
                    "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"})
        env.update(self.extra_env)
        return env

    def _append_log(self, what: str, text: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"--- {what}\n{text}")

    def _admin(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.pg_conninfo, dbname="postgres", autocommit=True,
                                   connect_timeout=10)
        except psycopg.Error as exc:
            raise ShopServerError(f"cannot reach PostgreSQL ({self.pg_conninfo}): {exc}") from exc

    def _create_database(self) -> None:
        with self._admin() as conn:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
            except psycopg.Error as exc:
                raise ShopServerError(f"cannot create database {self.database}: {exc}") from exc
        self._db_created = True

    def _drop_database(self) -> None:
        try:
            with self._admin() as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.database)))
            self._db_created = False
        except (psycopg.Error, ShopServerError) as exc:
            sys.stderr.write(f"ShopServer: could not drop {self.database}: {exc}\n")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise ShopServerError(f"the shop exited ({code}) before it was healthy:\n"
                                      f"{self.log_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise ShopServerError(f"the shop was not healthy within {self.startup_timeout_s:.0f}s "
                              f"({last}):\n{self.log_text()[-3000:]}")



# --- command line: `python -m examples.corpus materialize CHANGE_ID DEST` ------------------------

def main(argv: list[str] | None = None) -> int:
    """Materialise one corpus change as a git repository; prints ``BASE_REV HEAD_REV``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m examples.corpus")
    sub = parser.add_subparsers(dest="command", required=True)
    mat = sub.add_parser("materialize", help="make a git repo: base commit, then the change")
    mat.add_argument("change", help="a change id from the manifest (e.g. layout-shift-banner)")
    mat.add_argument("dest", type=Path, help="directory to create (replaced if it exists)")
    mat.add_argument("--changes", type=Path, default=CHANGES_DIR, help="corpus folder")
    sub.add_parser("list", help="list the corpus's change ids")
    args = parser.parse_args(argv)
    try:
        cases = load_manifest(CHANGES_DIR if args.command == "list" else args.changes)
    except DiffieError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "list":
        for case in cases:
            print(f"{case.id}\t{case.expected}\t{case.category}")
        return 0
    by_id = {c.id: c for c in cases}
    found = by_id.get(args.change)
    if found is None:
        print(f"error: no change {args.change!r} in {args.changes / 'manifest.yml'}; "
              f"known: {', '.join(by_id)}", file=sys.stderr)
        return 2
    if args.dest.exists():
        shutil.rmtree(args.dest)
    patch = args.changes / found.patch if found.patch else None
    try:
        base, head = materialize_repo(SHOP_DIR, patch, args.dest)
    except DiffieError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(base, head)
    return 0


if __name__ == "__main__":
    sys.exit(main())
