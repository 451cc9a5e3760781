"""The commands a user reaches for around a verification: ``diffie status``, ``diffie spec
check``, ``diffie image check|list`` and ``diffie shell`` (a restored VM with a shell, thrown
away on exit). Each validates or shows without running a verification.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from diffie import health
from diffie.composition import build_context
from diffie.config import Settings
from diffie.errors import InputError, SandboxError
from diffie.redact import redact
from diffie.remote import Remote
from diffie.run_images import repo_vm_caps
from diffie.sandbox.recipe import (
    LoadedRecipe,
    load_recipe,
    load_repository_recipe,
    repository_image_name,
)
from diffie.sandbox.store import KEY_RE, find_image, last_used, read_image, read_meta
from diffie.spec import SandboxSpec, Spec, load_spec
from diffie.spec_limits import SpecLimits

Out = Any   # a text stream


def status_fields(settings: Settings) -> dict[str, str]:
    return {
        "data_dir": str(settings.data_dir.expanduser().resolve()),
        "database": redact(settings.resolved_database_url()),
        "broker": redact(settings.resolved_broker_url()),
        "image_cache_dir": str(settings.image_cache_dir.expanduser().resolve()),
        "vm_images_dir": str(settings.vm_images_dir.expanduser().resolve()),
        "vm_slots": str(settings.vm_slots),
        "vm_domain_type": settings.vm_domain_type,
        "queue": settings.queue_name,
    }


def cmd_status(args: argparse.Namespace, out: Out = sys.stdout) -> int:
    """Where Diffie keeps things, and whether the deployment is ready (:mod:`diffie.health`):
    database, broker, live workers, VM slots, queue. Exit 1 when not ready."""
    settings = Settings()
    fields = status_fields(settings)
    if args.field:
        if args.field not in fields:
            raise InputError("field", f"no field {args.field!r}; fields: {', '.join(fields)}")
        print(fields[args.field], file=out)
        return 0
    remote = Remote.from_args(args.server, args.token)
    if remote is not None:
        ready = remote.ready()
    else:
        ctx = build_context(settings)
        try:
            ready = health.readiness(ctx).as_dict()
        finally:
            ctx.close()
    code = 0 if ready.get("status") == "ready" else 1
    if args.json:
        print(json.dumps({"paths": {} if remote else fields, **ready}, indent=2), file=out)
        return code
    if remote is None:
        width = max(map(len, fields))
        for key, value in fields.items():
            print(f"{key:<{width}}  {value}", file=out)
        print(file=out)
    print(f"status: {ready.get('status')}" + (f" ({remote.server})" if remote else ""),
          file=out)
    for check in ready.get("checks", []):
        mark = "ok  " if check.get("ok") else ("FAIL" if check.get("fatal", True) else "warn")
        line = f"  {mark} {check.get('name', '?'):<9} {check.get('detail', '')}".rstrip()
        print(line, file=out)
        if check.get("todo") and not check.get("ok"):
            print(f"       → {check['todo']}", file=out)
    for worker in ready.get("workers", []):
        print(f"  worker {worker['name']} (host {worker['host']}, pid {worker['pid']}"
              f"{', embedded' if worker.get('embedded') else ''}): seen "
              f"{worker['last_seen_s']:g} s ago", file=out)
    for host, use in sorted((ready.get("slots") or {}).items()):
        print(f"  slots on {host}: {use['busy']} busy of {use['total']}", file=out)
    queue = ready.get("queue")
    if queue:
        print(f"  queue: {queue['queued_runs']} run(s) queued, {queue['running_runs']} running"
              + (f", {queue['broker_messages']} message(s) at the broker"
                 if queue.get("broker_messages") is not None else ""), file=out)
    return code


# --- spec check ---------------------------------------------------------------------------------

def describe_spec(spec: Spec) -> str:
    pairs = sum(len(spec.flow_viewports(f)) for f in spec.flows)
    shots = sum(1 for f in spec.flows for s in f.steps if s.action == "screenshot")
    sandbox = ("no sandbox (URL mode only)" if spec.sandbox is None
               else f"sandbox: {spec.sandbox.image_label}, {_services(spec.sandbox)}, "
                    f"{len(spec.sandbox.commands)} build/migrate/deploy command(s)")
    return (f"{len(spec.flows)} flow(s) × viewports = {pairs} pair(s), {shots} screenshot "
            f"step(s); {sandbox}")


def _services(sandbox: SandboxSpec) -> str:
    """``port 8000`` (one service), ``services web:3000, api:8000``."""
    if sandbox.services is None:
        return f"port {sandbox.port}"
    return "services " + ", ".join(f"{s.name}:{s.port}" for s in sandbox.effective_services)


def cmd_spec_check(args: argparse.Namespace, out: Out = sys.stdout) -> int:
    """Validate a spec (and the repository recipe it names) without running anything."""
    path = Path(args.path)
    settings = Settings()
    spec = load_spec(path, limits=SpecLimits.from_settings(settings))
    print(f"{path}: ok — {describe_spec(spec)}", file=out)
    if spec.sandbox is not None and spec.sandbox.recipe:
        root = Path(args.repo) if args.repo else path.resolve().parent
        loaded = load_repository_recipe(root, spec.sandbox.recipe,
                                        name=repository_image_name(root.resolve().name),
                                        max_vm=repo_vm_caps(settings))
        print(f"{spec.sandbox.recipe}: ok — {describe_recipe(settings, loaded)}", file=out)
    elif spec.sandbox is not None and spec.sandbox.image:
        loaded = load_recipe(settings.vm_images_dir, spec.sandbox.image)
        print(f"image {spec.sandbox.image}: ok — {describe_recipe(settings, loaded)}", file=out)
    return 0


# --- images -------------------------------------------------------------------------------------

def describe_recipe(settings: Settings, loaded: LoadedRecipe) -> str:
    r = loaded.recipe
    built = read_image(settings.image_cache_dir.expanduser().resolve() / loaded.key, loaded.name)
    state = (f"built ({len(built.snapshots())} slot snapshot(s))" if built is not None
             else "not built yet" + (" (a run builds it)" if loaded.origin == "repository"
                                     else f" (diffie image build {loaded.name})"))
    return (f"image {loaded.key}, {len(r.packages)} package(s), ports {r.ports or '-'}, "
            f"{r.vm.vcpus} vCPU / {r.vm.memory_mib} MiB; {state}")


def load_any_recipe(settings: Settings, what: str, repo: str | None) -> LoadedRecipe:
    """An operator image name (``shop``) or a repository recipe's path (``.diffie/image.yml``,
    relative to ``repo`` (default the current directory) or to the current directory)."""
    if "/" in what or what.endswith((".yml", ".yaml")):
        root = Path(repo or ".").resolve()
        rel = Path(what)
        # a path from the current directory into the repository works too
        if rel.is_absolute() or (not (root / rel).exists() and rel.exists()):
            try:
                rel = rel.resolve().relative_to(root)
            except ValueError:
                raise InputError("repo", f"{what} is not inside the repository {root}") from None
        return load_repository_recipe(root, rel.as_posix(), name=repository_image_name(root.name),
                                      max_vm=repo_vm_caps(settings))
    return load_recipe(settings.vm_images_dir, what)


def cmd_image_check(args: argparse.Namespace, out: Out = sys.stdout) -> int:
    settings = Settings()
    loaded = load_any_recipe(settings, args.recipe, args.repo)
    print(f"{args.recipe}: ok — {describe_recipe(settings, loaded)}", file=out)
    return 0


def image_rows(settings: Settings) -> list[dict[str, Any]]:
    root = settings.image_cache_dir.expanduser().resolve()
    rows = []
    for directory in sorted(root.glob("*-*")):
        meta = read_meta(directory)
        if meta is None or not directory.is_dir():
            continue
        info = read_image(directory, str(meta.get("name", directory.name)))
        size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
        used = last_used(directory)
        rows.append({
            "key": directory.name, "name": meta.get("name", ""),
            "origin": meta.get("origin", "operator"),
            "source": meta.get("source") or meta.get("recipe_dir", ""),
            "slots": len(info.snapshots()) if info else 0,
            "size_mib": round(size / 2**20),
            "last_used": datetime.fromtimestamp(used, UTC).isoformat(timespec="seconds")
            if used else "",
            "current": _is_current(settings, meta, directory.name),
        })
    return rows


def _is_current(settings: Settings, meta: dict[str, Any], key: str) -> bool | None:
    if meta.get("origin", "operator") != "operator":
        return None
    try:
        return load_recipe(settings.vm_images_dir, str(meta.get("name", ""))).key == key
    except SandboxError:
        return False


def cmd_image_list(args: argparse.Namespace, out: Out = sys.stdout) -> int:
    settings = Settings()
    rows = image_rows(settings)
    if args.json:
        print(json.dumps(rows, indent=2), file=out)
        return 0
    if not rows:
        print(f"no images in {settings.image_cache_dir} (diffie image build NAME, or a run "
              "whose spec names a sandbox.recipe builds one)", file=out)
        return 0
    print(f"{'KEY':<34} {'ORIGIN':<10} {'SLOTS':>5} {'MiB':>6}  {'LAST USED':<25} CURRENT",
          file=out)
    for row in rows:
        current = {True: "yes", False: "no", None: "-"}[row["current"]]
        print(f"{row['key']:<34} {row['origin']:<10} {row['slots']:>5} {row['size_mib']:>6}  "
              f"{row['last_used']:<25} {current}", file=out)
    return 0


# --- shell --------------------------------------------------------------------------------------

def cmd_shell(args: argparse.Namespace, out: Out = sys.stdout) -> int:
    """Restore IMAGE in a VM slot and run commands in it (``-c`` or lines from stdin) through
    the guest agent; the VM is destroyed on exit, like every run's."""
    from diffie.composition import build_context
    from diffie.sandbox.images import build_recipe
    from diffie.sandbox.libvirt import LibvirtSandbox

    ctx = build_context()
    try:
        settings = ctx.settings
        if KEY_RE.match(args.image):                 # a built image, by key (image list)
            target, guest_ports = args.image, find_image(settings, args.image).ports
        else:
            loaded = load_any_recipe(settings, args.image, args.repo)
            target, guest_ports = loaded.name, loaded.recipe.ports
            if loaded.origin == "repository":
                target = build_recipe(settings, loaded, progress=_err).key
        sandbox = LibvirtSandbox(settings, ctx.db)
        t = time.monotonic()
        with sandbox.lease(target, run_id="shell") as vm:
            ports = ", ".join(f"guest {g} -> {vm.url(g)}" for g in guest_ports)
            _err(f"VM {vm.name} restored in {time.monotonic() - t:.1f} s ({ports or 'no ports'});"
                 " commands run as root through the guest agent; 'exit' or end of input "
                 "destroys it")
            commands = args.command or _stdin_lines()
            code = 0
            for line in commands:
                if line.strip() in ("exit", "quit"):
                    break
                if not line.strip():
                    continue
                res = vm.exec(["/bin/sh", "-c", line], timeout=args.timeout, cwd="/")
                out.write(res.stdout)
                sys.stderr.write(res.stderr)
                out.flush()
                code = res.exit_code
                if res.exit_code:
                    _err(f"exit {res.exit_code}")
        _err("VM destroyed")
        return code
    finally:
        ctx.close()


def _stdin_lines() -> Any:
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            sys.stderr.write("guest# ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            return
        yield line.rstrip("\n")


def _err(line: str) -> None:
    print(f"[diffie] {line}", file=sys.stderr, flush=True)


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("status", help="where Diffie keeps its data, images and recipes, and "
                       "whether it is ready: database, broker, workers, VM slots, queue "
                       "(exit 1 when not)")
    s.add_argument("--field", default=None, help="print one value (e.g. data_dir)")
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.add_argument("--server", default=None, help="ask a Diffie server's /ready instead "
                   "(default $DIFFIE_SERVER)")
    s.add_argument("--token", default=None, help="its API token, for the details "
                   "(default $DIFFIE_TOKEN)")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("spec", help="project specs (.diffie.yml)")
    spec_sub = s.add_subparsers(dest="spec_command", required=True)
    check = spec_sub.add_parser("check", help="validate a spec and the recipe it names")
    check.add_argument("path", nargs="?", default=".diffie.yml")
    check.add_argument("--repo", default=None,
                       help="the repository root (default: the spec's directory)")
    check.set_defaults(func=cmd_spec_check)


def add_image_parsers(image_sub: Any) -> None:
    check = image_sub.add_parser("check", help="validate a recipe (an operator image name or "
                                 "a repository's recipe path) without building")
    check.add_argument("recipe")
    check.add_argument("--repo", default=None, help="repository root of a recipe path "
                       "(default: the current directory)")
    check.set_defaults(func=cmd_image_check)
    lst = image_sub.add_parser("list", help="built images in the cache")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_image_list)


def add_shell_parser(sub: Any) -> None:
    s = sub.add_parser("shell", help="a restored VM of an image with a shell (thrown away on "
                       "exit)")
    s.add_argument("image", help="an operator image name, a repository recipe path or a built "
                   "image's key (diffie image list)")
    s.add_argument("--repo", default=None)
    s.add_argument("-c", dest="command", action="append", default=None,
                   help="run this command and exit (repeatable)")
    s.add_argument("--timeout", type=float, default=600.0, help="seconds per command")
    s.set_defaults(func=cmd_shell)
