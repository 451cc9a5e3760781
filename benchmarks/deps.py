"""``python -m benchmarks.deps``: the second example app's dependency install inside its VM,
through the package proxy, cold (an empty proxy cache: every packument and tarball from the
registry) and warm (the same install in a fresh VM, served from the cache).

The app is ``examples/tasks`` (Express + pg, esbuild) with its recipe in its own tree; the
install is its deploy's ``npm ci`` of ``package-lock.json``. ``--app shop`` measures a pip
install in the shop with its own recipe instead (``examples/repo_recipe.py``). The last line::

    deps: cold_install_s=<s> warm_install_s=<s>
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from diffie.config import Settings
from diffie.db import Database
from diffie.models import Base
from diffie.sandbox.images import build_recipe
from diffie.sandbox.libvirt import LibvirtSandbox
from diffie.sandbox.package_proxy import PackageProxy
from diffie.sandbox.recipe import load_repository_recipe
from examples.repo_recipe import shop_with_its_recipe

TASKS = Path(__file__).resolve().parents[1] / "examples" / "tasks"
REQUIREMENTS = "markdown==3.4.1\nrequests==2.31.0\nJinja2==3.1.2\npyyaml==6.0.1\n"


@dataclass(frozen=True)
class Install:
    app: Path                  # the tree whose recipe makes the image
    files: tuple[str, ...]     # copied into /tmp/app in the guest
    command: str               # run in /tmp/app
    registry: str


def tasks_install(work: Path) -> Install:
    app = work / "app"
    shutil.copytree(TASKS, app, ignore=shutil.ignore_patterns("node_modules", "changes"))
    return Install(app, ("package.json", "package-lock.json"),
                   "npm ci --no-audit --no-fund", "npm")


def shop_install(work: Path) -> Install:
    app = shop_with_its_recipe(work / "app")
    (app / "requirements.txt").write_text(REQUIREMENTS)
    return Install(app, ("requirements.txt",),
                   "pip3 install --break-system-packages --root-user-action=ignore "
                   "--no-cache-dir --disable-pip-version-check -r requirements.txt", "pypi")


def say(line: str) -> None:
    print(f"[bench] {line}", file=sys.stderr, flush=True)


def install_once(sandbox: LibvirtSandbox, key: str, proxy: PackageProxy, install: Install,
                 label: str) -> float:
    with sandbox.lease(key, run_id=f"bench-deps-{label}") as vm:
        vm.close_packages()          # the lease's own proxy: replaced by this run's
        vm.open_packages(proxy)
        with tempfile.TemporaryDirectory(prefix="diffie-bench-files-") as tmp:
            for name in install.files:
                shutil.copy2(install.app / name, Path(tmp) / name)
            vm.put_tree(Path(tmp), "/tmp/app")
        start = time.monotonic()
        res = vm.exec(["/bin/sh", "-c", f"cd /tmp/app && {install.command}"], timeout=1200)
        took = time.monotonic() - start
        if not res.ok:
            raise SystemExit(f"the install failed ({label}): {res.tail(2000)}")
        last = (res.stdout.strip().splitlines() or [""])[-1]
        say(f"{label}: {took:.1f} s; {last[:200]}")
        return took


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.deps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--app", choices=("tasks", "shop"), default="tasks",
                   help="tasks: npm ci of examples/tasks (default); shop: a pip install")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="diffie-bench-deps-") as tmp:
        work = Path(tmp)
        settings = Settings(data_dir=work / "data", database_url="", vm_slots=1)
        settings.ensure_dirs()
        install = tasks_install(work) if args.app == "tasks" else shop_install(work)
        loaded = load_repository_recipe(install.app, ".diffie/image.yml", name="repo")
        say(f"image {loaded.key} (built once, then cached)")
        key = build_recipe(settings, loaded, progress=lambda line: say(f"image: {line}"),
                           slots=1).key
        db = Database(f"sqlite:///{work / 'data' / 'diffie.db'}")
        Base.metadata.create_all(db.engine)
        proxy = PackageProxy(work / "package-cache", [install.registry]).start()
        try:
            sandbox = LibvirtSandbox(settings, db)
            cold = install_once(sandbox, key, proxy, install, "cold")
            fetched = dict(proxy.stats)
            warm = install_once(sandbox, key, proxy, install, "warm")
            say(f"proxy: cold {fetched}; after warm {proxy.stats}")
        finally:
            proxy.close()
            db.dispose()
    print(f"| install ({args.app}) | seconds |\n|---|---|\n| cold (empty cache) | {cold:.1f} |\n"
          f"| warm (cached) | {warm:.1f} |")
    print(f"deps: cold_install_s={cold:.1f} warm_install_s={warm:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
