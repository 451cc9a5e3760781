"""``python -m benchmarks.deps``: a change's dependency install inside the VM, through the
package proxy, cold (an empty proxy cache: every index page and file from the registry) and
warm (the same install in a fresh VM, served from the cache).

The app is the shop with its recipe in its own tree (``examples/repo_recipe.py``); the install
is ``pip3 install -r requirements.txt`` of ``REQUIREMENTS`` (a typical small web app's: a
handful of pure-Python and binary wheels with their dependencies). The last line::

    deps: cold_install_s=<s> warm_install_s=<s>
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from diffie.config import Settings
from diffie.db import Database
from diffie.models import Base
from diffie.sandbox.images import build_recipe
from diffie.sandbox.libvirt import LibvirtSandbox
from diffie.sandbox.package_proxy import PackageProxy
from diffie.sandbox.recipe import load_repository_recipe
from examples.repo_recipe import shop_with_its_recipe

REQUIREMENTS = "markdown==3.4.1\nrequests==2.31.0\nJinja2==3.1.2\npyyaml==6.0.1\n"
INSTALL = ("pip3 install --break-system-packages --root-user-action=ignore --no-cache-dir "
           "--disable-pip-version-check -r /tmp/requirements.txt")


def say(line: str) -> None:
    print(f"[bench] {line}", file=sys.stderr, flush=True)


def install_once(sandbox: LibvirtSandbox, key: str, proxy: PackageProxy, label: str) -> float:
    with sandbox.lease(key, run_id=f"bench-deps-{label}") as vm:
        vm.close_packages()          # the lease's own proxy: replaced by this run's
        vm.open_packages(proxy)
        res = vm.exec(["/bin/sh", "-c", f"printf '%s' '{REQUIREMENTS}' > /tmp/requirements.txt"],
                      timeout=30)
        assert res.ok, res.tail()
        start = time.monotonic()
        res = vm.exec(["/bin/sh", "-c", INSTALL], timeout=900)
        took = time.monotonic() - start
        if not res.ok:
            raise SystemExit(f"the install failed ({label}): {res.tail(2000)}")
        say(f"{label}: {took:.1f} s; {res.stdout.strip().splitlines()[-1][:200]}")
        return took


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.deps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="diffie-bench-deps-") as tmp:
        work = Path(tmp)
        settings = Settings(data_dir=work / "data", database_url="", vm_slots=1)
        settings.ensure_dirs()
        app = shop_with_its_recipe(work / "app")
        loaded = load_repository_recipe(app, ".diffie/image.yml", name="repo")
        say(f"image {loaded.key} (built once, then cached)")
        key = build_recipe(settings, loaded, progress=lambda line: say(f"image: {line}"),
                           slots=1).key
        db = Database(f"sqlite:///{work / 'data' / 'diffie.db'}")
        Base.metadata.create_all(db.engine)
        proxy = PackageProxy(work / "package-cache", ["pypi"]).start()
        try:
            sandbox = LibvirtSandbox(settings, db)
            cold = install_once(sandbox, key, proxy, "cold")
            fetched = dict(proxy.stats)
            warm = install_once(sandbox, key, proxy, "warm")
            say(f"proxy: cold {fetched}; after warm {proxy.stats}")
        finally:
            proxy.close()
            db.dispose()
    print(f"| install | seconds |\n|---|---|\n| cold (empty cache) | {cold:.1f} |\n"
          f"| warm (cached) | {warm:.1f} |")
    print(f"deps: cold_install_s={cold:.1f} warm_install_s={warm:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
