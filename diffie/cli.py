"""``diffie``: serve the API, run a worker, verify a change from the shell.

Exit codes of ``check``, ``verify`` (with ``--wait``): 0 pass, 1 fail, 3 changed, 2 error
(also for bad input). Progress goes to stderr; with ``--json``, stdout holds exactly one JSON
object whatever happened: the verdict, the queued run, or an error object
(:mod:`diffie.cli_output`, schema ``diffie schema --cli``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, NoReturn

import uvicorn

from benchmarks.corpus import add_parser as add_bench_parser
from diffie import agent_hook, cli_output, cli_tools, logs, run_store, submit
from diffie.api import OPEN_WARNING, create_app
from diffie.api.auth import parse_tokens
from diffie.app_context import AppContext
from diffie.approvals import Approved
from diffie.ci_outputs import Fetch, local_fetch, write_outputs
from diffie.composition import build_context
from diffie.config import Settings
from diffie.errors import DiffieError, InputError, SpecError
from diffie.mcp_server import serve_stdio
from diffie.models import FINISHED
from diffie.remote import SERVER_ENV, TOKEN_ENV, Remote
from diffie.render.schema import schema_text, write_schema
from diffie.sandbox.images import build_image
from diffie.worktree import NoChanges, origin_url, patch_of, snapshot_worktree
from workers.embedded import EmbeddedWorkers

EXIT_CODES = {"pass": 0, "fail": 1, "error": 2, "changed": 3}
EXIT_ERROR = 2
REMOTE_WAIT_S = 3600.0


def err(message: str) -> None:
    print(f"[diffie] {message}", file=sys.stderr, flush=True)


def print_result(snap: dict[str, Any], *, as_json: bool) -> int:
    verdict = snap.get("verdict") or {}
    status = snap.get("verdict_status") or "error"        # cancelled, or never judged
    if as_json:
        if not verdict:
            code: cli_output.ErrorCode = "cancelled" if snap["status"] == "cancelled" \
                else "run_error"
            print(cli_output.failure(code, snap.get("reason") or f"the run is {snap['status']}",
                                     run_id=snap["id"]))
        else:
            if Path(snap["report"]).is_file():          # the report on this machine's disk
                verdict = {**verdict, "report_path": snap["report"]}
            print(json.dumps(verdict, indent=2))
    else:
        if status == "error":
            print(f"verdict: error — {snap.get('reason') or snap['status']}")
        else:
            print(f"verdict: {status} — {verdict.get('summary', '')}")
        for f in (verdict.get("findings") or [])[:20]:
            where = " @ ".join(str(x) for x in (f.get("flow"), f.get("viewport")) if x)
            step = f" step {f['step']}" if f.get("step") is not None else ""
            pre = " (pre-existing)" if f.get("pre_existing") else ""
            print(f"  [{f['kind']}] {where}{step}{pre}: {str(f.get('message', ''))[:200]}")
        more = len(verdict.get("findings") or []) - 20
        if more > 0:
            print(f"  ... and {more} more (see the report)")
        for n in (verdict.get("not_verified") or [])[:10]:
            print(f"  [not verified] {str(n.get('message', ''))[:200]}")
        print(f"report: {snap['report']}")
    return EXIT_CODES.get(status, EXIT_ERROR)


def submit_and_wait(ctx: AppContext, run_id: str, args: argparse.Namespace) -> int:
    snap = await_run(ctx, run_id, wait=args.wait or wants_outputs(args),
                     timeout_s=args.timeout)
    if isinstance(snap, int):
        return snap
    if snap is None:
        print(cli_output.queued_json(run_id) if args.json else run_id)
        return 0
    write_ci_outputs(snap, local_fetch(ctx.settings.artifacts_dir, run_id), args)
    return print_result(snap, as_json=args.json)


def wants_outputs(args: argparse.Namespace) -> bool:
    """``--junit-out`` / ``--ctrf-out`` need the finished run: they imply ``--wait``."""
    return bool(getattr(args, "junit_out", None) or getattr(args, "ctrf_out", None))


def write_ci_outputs(snap: dict[str, Any], fetch: Fetch, args: argparse.Namespace) -> None:
    for path in write_outputs(snap, fetch, junit=getattr(args, "junit_out", None),
                              ctrf=getattr(args, "ctrf_out", None)):
        err(f"wrote {path}")


def await_run(ctx: AppContext, run_id: str, *, wait: bool,
              timeout_s: float | None) -> dict[str, Any] | None:
    """Queue ``run_id``; with ``wait`` (or no live worker: one starts in this process, and
    the run is awaited) its finished snapshot, else None. Raises what waiting raised."""
    ctx.enqueue(run_id)
    err(f"queued run {run_id}")
    live = run_store.live_workers(ctx.db, within_s=3 * ctx.settings.heartbeat_s + 5)
    embedded = None
    if not live:
        err("no worker is running: starting one in this process")
        embedded = EmbeddedWorkers(ctx.celery, publish=bool(ctx.publishers)).start()
    elif not wait:
        return None
    try:
        return submit.wait_for(ctx, run_id, say=err,
                               timeout_s=timeout_s or ctx.settings.task_time_limit_s * 2)
    except (KeyboardInterrupt, DiffieError) as exc:
        if isinstance(exc, KeyboardInterrupt):
            err(f"interrupted: run {run_id} is retried by the next worker")
        raise RunAwaitError(run_id, exc) from exc
    finally:
        if embedded is not None:
            embedded.stop(timeout=30)


class RunAwaitError(DiffieError):
    """Waiting for a queued run failed (timeout, interrupt): the run id and the cause."""

    def __init__(self, run_id: str, cause: BaseException) -> None:
        self.run_id = run_id
        self.cause = cause
        super().__init__(str(cause) or type(cause).__name__)


# --- commands -----------------------------------------------------------------------------------

def remote_of(args: argparse.Namespace) -> Remote | None:
    return Remote.from_args(getattr(args, "server", None), getattr(args, "token", None))


def remote_submit_and_wait(remote: Remote, body: dict[str, Any],
                           args: argparse.Namespace) -> int:
    """Submit to a Diffie server; with ``--wait``, follow the run and print its verdict."""
    body["callback_url"] = args.callback_url
    run_id = remote.submit({k: v for k, v in body.items() if v is not None})
    err(f"queued run {run_id} on {remote.server}")
    if not (args.wait or wants_outputs(args)):
        print(cli_output.queued_json(run_id) if args.json else run_id)
        return 0
    try:
        snap = remote.wait(run_id, timeout_s=args.timeout or REMOTE_WAIT_S, say=err)
    except (KeyboardInterrupt, DiffieError) as exc:
        if isinstance(exc, KeyboardInterrupt):
            err(f"interrupted: run {run_id} goes on on the server (diffie runs cancel {run_id})")
        raise RunAwaitError(run_id, exc) from exc
    write_ci_outputs(snap, lambda name: remote.artifact(run_id, name), args)
    return print_result(snap, as_json=args.json)


def local_only(args: argparse.Namespace) -> None:
    """Flags that only a server acts on, refused for a run on this machine."""
    if getattr(args, "callback_url", None):
        raise InputError("callback_url", "a callback is sent by a Diffie server: give --server "
                         "(a run on this machine reports through its exit code, --json, "
                         "--junit-out and --ctrf-out)")


def cmd_check(args: argparse.Namespace) -> int:
    remote = remote_of(args)
    if remote is not None:
        try:
            spec = Path(args.spec).read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"cannot read the spec: {exc.strerror}", file=args.spec) from None
        return remote_submit_and_wait(remote, {"base_url": args.base_url,
                                               "head_url": args.head_url, "spec": spec,
                                               "title": args.title}, args)
    local_only(args)
    ctx = build_context()
    try:
        run_id = submit.submit_url(ctx, base_url=args.base_url, head_url=args.head_url,
                                   spec_path=args.spec, title=args.title)
        return submit_and_wait(ctx, run_id, args)
    finally:
        ctx.close()


def cmd_verify(args: argparse.Namespace) -> int:
    base, head = args.base, args.head
    remote = remote_of(args)
    patch = None
    if args.worktree:
        if head is not None:
            raise InputError("head", "--worktree is the head: leave out --head")
        work = snapshot_worktree(Path(args.repo), base or "HEAD")
        err(f"the working tree ({work.files} changed path(s) against {base or 'HEAD'}) is "
            f"commit {work.head[:12]}, kept as {work.ref}")
        base, head = work.base, work.head
        if remote is not None:              # the server gets the base and the work as a patch
            patch, head = patch_of(Path(args.repo), work), None
    else:
        for name, value in (("base", base), ("head", head)):
            if not value:
                raise InputError(name, f"--{name} is required (or --worktree for uncommitted "
                                       "work)")
    if remote is not None:
        repo = args.server_repo or (origin_url(Path(args.repo)) if patch is not None
                                    else args.repo)
        if not repo:
            raise InputError("server_repo", f"{args.repo} has no 'origin' remote: name the "
                             "repository as the server knows it (a URL or a path there)")
        return remote_submit_and_wait(remote, {"repo": repo, "base": base, "head": head,
                                               "patch": patch, "spec_path": args.spec_path,
                                               "title": args.title}, args)
    local_only(args)
    ctx = build_context()
    try:
        run_id = submit.submit_repo(ctx, repo=args.repo, base=base, head=head,
                                    spec_path=args.spec_path, title=args.title)
        return submit_and_wait(ctx, run_id, args)
    finally:
        ctx.close()


def cmd_hook(args: argparse.Namespace) -> int:
    """A coding agent's hook (see :mod:`diffie.agent_hook`): never raises, the exit code and
    the stream say it all."""
    repo = args.repo or agent_hook.hook_cwd(sys.stdin) or "."
    try:
        work = snapshot_worktree(Path(repo), args.base or "HEAD")
    except NoChanges as exc:
        print(f"diffie: nothing to verify ({exc})")
        return 0
    except DiffieError as exc:
        print(f"diffie: cannot verify the working tree: {exc}", file=sys.stderr)
        return 1
    local_only(args)
    ctx = build_context()
    try:
        run_id = submit.submit_repo(ctx, repo=repo, base=work.base, head=work.head,
                                    spec_path=args.spec_path,
                                    title=args.title or "working tree (agent hook)")
        snap = await_run(ctx, run_id, wait=True, timeout_s=args.timeout)
    except SpecError as exc:                        # the change's own spec: the agent can fix it
        print(f"diffie: fail — the change's spec is invalid: {exc}", file=sys.stderr)
        return 2
    except (DiffieError, KeyboardInterrupt) as exc:
        print(f"diffie: error — could not verify: {exc}", file=sys.stderr)
        return 1
    finally:
        ctx.close()
    assert snap is not None
    verdict = snap.get("verdict") or {"status": "error",
                                      "reason": snap.get("reason") or snap["status"]}
    status = str(verdict.get("status", "error"))
    text = agent_hook.summary(verdict, snap["report"])
    code = agent_hook.exit_code(status)
    print(text, file=sys.stderr if code else sys.stdout)
    return code


def cmd_mcp(args: argparse.Namespace) -> int:
    """The MCP server on stdio."""
    ctx = build_context()
    try:
        serve_stdio(ctx)
    finally:
        ctx.close()
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    remote = remote_of(args)
    if remote is not None:
        got = remote.request("POST", f"/v1/runs/{args.run_id}/approve",
                             json={"findings": args.findings or None, "note": args.note,
                                   "by": args.by})
        done = Approved(approved=list(got["approved"]), whole_run=bool(got["whole_run"]))
    else:
        ctx = build_context()
        try:
            done = submit.approve_findings(ctx, args.run_id, args.findings or None, by=args.by,
                                           note=args.note)
        finally:
            ctx.close()
    if not done.approved:
        err(f"run {args.run_id} has no visual change to approve")
    else:
        err(f"approved {len(done.approved)} visual change(s) of run {args.run_id}"
            + ("; the run is approved" if done.whole_run else ""))
    if args.json:
        print(cli_output.approved_json(args.run_id, done.approved, done.whole_run))
    return 0


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    remote = remote_of(args)
    if remote is not None:
        remote.request("POST", f"/v1/runs/{args.run_id}/cancel", json={"reason": args.reason})
        err(f"run {args.run_id} cancelled on {remote.server}")
        if args.json:
            print(cli_output.cancelled_json(args.run_id))
        return 0
    ctx = build_context()
    try:
        submit.cancel_run(ctx, args.run_id, args.reason)
        err(f"run {args.run_id} cancelled (a running one stops at its next phase)")
        if args.json:
            print(cli_output.cancelled_json(args.run_id))
        return 0
    finally:
        ctx.close()


def cmd_runs_show(args: argparse.Namespace) -> int:
    remote = remote_of(args)
    ctx = build_context() if remote is None else None
    try:
        snap = submit.snapshot(ctx, args.run_id) if ctx is not None else \
            _remote_snapshot(remote, args.run_id)
        if snap is None:
            err(f"no run {args.run_id}")
            if args.json:
                print(cli_output.failure("not_found", f"no run {args.run_id}"))
            return EXIT_ERROR
        if args.json:
            print(json.dumps(snap, indent=2, default=str))
            return 0
        print(f"run {snap['id']} ({snap['mode']}): {snap['status']} — {snap['phase']}")
        if snap["status"] in FINISHED:
            print_result(snap, as_json=False)
        return 0
    finally:
        if ctx is not None:
            ctx.close()


def _remote_snapshot(remote: Remote | None, run_id: str) -> dict[str, Any] | None:
    assert remote is not None
    try:
        return remote.snapshot(run_id)
    except InputError as exc:
        if exc.code == "not_found":
            return None
        raise


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is only reachable from this machine."""
    name = host.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback
                               for info in infos)


def log_format() -> str:
    return os.environ.get("DIFFIE_LOG_FORMAT", "text").strip().lower() or "text"


def cmd_serve(args: argparse.Namespace) -> int:
    settings = Settings()
    logs.configure(settings.log_format, level=logging.getLevelName(args.log_level.upper()))
    if not parse_tokens(settings.api_tokens):
        if not is_loopback(args.host) and not args.insecure_open:
            err(f"refusing to serve on {args.host}: DIFFIE_API_TOKENS is empty, so the API "
                "would be open to everyone who can reach this address (submit runs, read every "
                "report). Set DIFFIE_API_TOKENS, listen on 127.0.0.1, or pass --insecure-open "
                "if something in front of Diffie authenticates every request.")
            return EXIT_ERROR
        err(f"WARNING: {OPEN_WARNING}")
    ctx = build_context(settings)
    app = create_app(context=ctx)
    worker = None
    if not args.no_worker:
        worker = EmbeddedWorkers(ctx.celery, publish=bool(ctx.publishers),
                                 loglevel=args.log_level.upper()).start()
        err(f"embedded worker {worker.hostname} started")
    try:
        # JSON logs: uvicorn's records go through the root handler too (one format)
        if settings.log_format == "json":
            uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                        log_config=None)
        else:
            uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        if worker is not None:
            worker.stop(timeout=30)
        ctx.close()
    return 0


def worker_queues(settings: Settings, takes: str) -> list[str]:
    """The queues a ``diffie worker --takes all|runs|publish`` consumes."""
    runs_q, publish_q = settings.queue_name, settings.publish_queue
    return {"all": [runs_q, publish_q], "runs": [runs_q], "publish": [publish_q]}[takes]


def cmd_worker(args: argparse.Namespace) -> int:
    ctx = build_context()
    logs.configure(ctx.settings.log_format, level=logging.getLevelName(args.loglevel.upper()))
    app = ctx.celery
    worker = app.Worker(pool_cls=args.pool, concurrency=args.concurrency,
                        loglevel=args.loglevel.upper(),
                        queues=worker_queues(ctx.settings, args.takes),
                        without_gossip=True, without_mingle=True)
    worker.start()
    return int(getattr(worker, "exitcode", 0) or 0)


def cmd_image_build(args: argparse.Namespace) -> int:
    info = build_image(Settings(), args.name, progress=lambda line: err(f"image: {line}"),
                       slots=args.slots, force=args.force)
    print(json.dumps({"name": info.name, "key": info.key, "dir": str(info.dir)}))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    text, write = (cli_output.schema_text, cli_output.write_schema) if args.cli else \
        (schema_text, write_schema)
    if args.out:
        err(f"wrote {write(Path(args.out))}")
    else:
        sys.stdout.write(text())
    return 0


def add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=None,
                   help=f"a Diffie server's URL: act through its API instead of this machine's "
                        f"database and broker (default ${SERVER_ENV})")
    p.add_argument("--token", default=None,
                   help=f"the server's API token (default ${TOKEN_ENV})")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="diffie", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="the API and an embedded worker (one machine)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--no-worker", action="store_true", help="API only (workers run elsewhere)")
    s.add_argument("--insecure-open", action="store_true",
                   help="serve on a non-loopback address without DIFFIE_API_TOKENS (an open "
                   "API: only behind something that authenticates every request)")
    s.add_argument("--log-level", default="info")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("worker", help="a Celery worker taking runs (and GitHub publish jobs) "
                       "from the queue")
    s.add_argument("--takes", default="all", choices=["all", "runs", "publish"],
                   help="runs, publish jobs (GitHub check runs and comments), or both")
    s.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"])
    s.add_argument("--concurrency", type=int, default=1)
    s.add_argument("--loglevel", default="info")
    s.set_defaults(func=cmd_worker)

    for name, help_text in (("check", "verify two running URLs (URL mode)"),
                            ("verify", "verify a git repository at two revisions, in VMs")):
        s = sub.add_parser(name, help=help_text)
        if name == "check":
            s.add_argument("--base-url", required=True)
            s.add_argument("--head-url", required=True)
            s.add_argument("--spec", required=True, help="the .diffie.yml with the flows")
            s.set_defaults(func=cmd_check)
        else:
            s.add_argument("--repo", required=True, help="path of a local git repository")
            s.add_argument("--base", default=None,
                           help="base revision (with --worktree: default HEAD)")
            s.add_argument("--head", default=None, help="head revision (not with --worktree)")
            s.add_argument("--worktree", action="store_true",
                           help="verify the uncommitted working tree of --repo (tracked changes "
                                "and untracked files .gitignore keeps) against --base")
            s.add_argument("--spec-path", default=".diffie.yml")
            s.set_defaults(func=cmd_verify)
        s.add_argument("--wait", action="store_true", help="wait for the verdict")
        s.add_argument("--json", action="store_true", help="print the verdict JSON on stdout")
        s.add_argument("--title", default=None)
        s.add_argument("--timeout", type=float, default=None, help="seconds to wait at most")
        s.add_argument("--junit-out", default=None, metavar="FILE",
                       help="write the run's JUnit XML here (implies --wait)")
        s.add_argument("--ctrf-out", default=None, metavar="FILE",
                       help="write the run's CTRF JSON here (implies --wait)")
        add_server_flags(s)
        s.add_argument("--callback-url", default=None, metavar="URL",
                       help="with --server: the server POSTs the result here when the run "
                            "ends (signed; an origin the operator allows)")
        if name == "verify":
            s.add_argument("--server-repo", default=None,
                           help="with --server: the repository as the server knows it (a URL "
                                "or a path there; default: --repo, or with --worktree its "
                                "'origin' remote)")

    s = sub.add_parser("hook", help="verify uncommitted work as a coding agent's hook: fail "
                       "exits 2 with a summary on stderr; pass and changed exit 0")
    s.add_argument("--repo", default=None,
                   help="the project (default: the hook input's cwd, else the current one)")
    s.add_argument("--base", default=None, help="compare against this revision (default HEAD)")
    s.add_argument("--spec-path", default=".diffie.yml")
    s.add_argument("--title", default=None)
    s.add_argument("--timeout", type=float, default=None, help="seconds to wait at most")
    s.set_defaults(func=cmd_hook)

    s = sub.add_parser("approve", help="approve visual changes of a run (all, or the given "
                       "finding ids); later runs of the same pull request, repository or URL "
                       "pair showing the same change report them approved")
    s.add_argument("run_id")
    s.add_argument("findings", nargs="*", help="finding ids (f-…); default: every visual change")
    s.add_argument("--note", default=None, help="why (shown with the approval)")
    s.add_argument("--by", default=os.environ.get("USER") or "the command line",
                   help="who approves (default: $USER)")
    s.add_argument("--json", action="store_true")
    add_server_flags(s)
    s.set_defaults(func=cmd_approve)

    s = sub.add_parser("mcp", help="the MCP server for coding agents, on stdin/stdout (tools: "
                       "submit, wait, result, finding, cancel, list_runs)")
    s.set_defaults(func=cmd_mcp)

    s = sub.add_parser("runs", help="inspect runs")
    runs_sub = s.add_subparsers(dest="runs_command", required=True)
    show = runs_sub.add_parser("show", help="a run's status and verdict")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    add_server_flags(show)
    show.set_defaults(func=cmd_runs_show)
    cancel = runs_sub.add_parser("cancel", help="cancel a waiting, queued or running run")
    cancel.add_argument("run_id")
    cancel.add_argument("--reason", default="cancelled from the command line")
    cancel.add_argument("--json", action="store_true")
    add_server_flags(cancel)
    cancel.set_defaults(func=cmd_runs_cancel)

    s = sub.add_parser("image", help="VM images")
    image_sub = s.add_subparsers(dest="image_command", required=True)
    build = image_sub.add_parser("build", help="build (or reuse) a golden image")
    build.add_argument("name")
    build.add_argument("--force", action="store_true", help="rebuild from scratch")
    build.add_argument("--slots", type=int, default=None,
                       help="memory snapshots to make, one per VM slot (default DIFFIE_VM_SLOTS)")
    build.set_defaults(func=cmd_image_build)
    cli_tools.add_image_parsers(image_sub)
    cli_tools.add_shell_parser(sub)
    cli_tools.add_parsers(sub)

    add_bench_parser(sub)

    s = sub.add_parser("schema", help="print (or --out write) the verdict JSON Schema")
    s.add_argument("--out", default=None)
    s.add_argument("--cli", action="store_true",
                   help="the schema of everything --json prints (verdict, queued, error)")
    s.set_defaults(func=cmd_schema)
    return p


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a :class:`UsageError` (so ``--json`` can print it)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


class UsageError(Exception):
    """The command line does not parse."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    as_json = "--json" in argv
    try:
        args = parser().parse_args(argv)
    except UsageError as exc:
        err(f"error: {exc} (see --help)")
        if as_json:
            print(cli_output.failure("usage_error", str(exc)))
        return EXIT_ERROR
    as_json = bool(getattr(args, "json", False))
    try:
        logs.configure(log_format())
    except ValueError as exc:
        err(f"error: {exc}")
        return EXIT_ERROR
    try:
        code: int = args.func(args)
    except (DiffieError, KeyboardInterrupt) as exc:
        run_id = exc.run_id if isinstance(exc, RunAwaitError) else None
        cause = exc.cause if isinstance(exc, RunAwaitError) else exc
        if isinstance(cause, InputError):             # name the flag that is wrong
            err(f"error: --{cause.where.replace('_', '-')}: {cause}")
        elif not isinstance(cause, KeyboardInterrupt) or run_id is None:
            err("interrupted" if isinstance(cause, KeyboardInterrupt) else f"error: {cause}")
        if as_json:
            print(cli_output.error_json(cli_output.error_of(cause), run_id=run_id))
        return EXIT_ERROR
    return code

if __name__ == "__main__":
    sys.exit(main())
