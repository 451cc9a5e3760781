"""``python -m diffie.sandbox``: build images and clean up, without the full CLI.

    python -m diffie.sandbox build shop [--slots N] [--force]
    python -m diffie.sandbox reap
    python -m diffie.sandbox host-up
"""

from __future__ import annotations

import argparse
import json
import sys

from diffie.config import Settings
from diffie.errors import DiffieError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffie.sandbox")
    sub = parser.add_subparsers(dest="cmd", required=True)
    build = sub.add_parser("build", help="build (or reuse) a VM image from vm_images/NAME")
    build.add_argument("name")
    build.add_argument("--slots", type=int, default=None, help="snapshots to make (default vm_slots)")
    build.add_argument("--force", action="store_true", help="rebuild from scratch")
    sub.add_parser("reap", help="remove domains and overlays of dead lease holders")
    sub.add_parser("host-up", help="start virtlogd/libvirtd (with the /dev/kvm workaround)")
    args = parser.parse_args(argv)
    settings = Settings()
    try:
        if args.cmd == "build":
            from diffie.sandbox.images import build_image
            info = build_image(settings, args.name, slots=args.slots, force=args.force)
            print(json.dumps({"name": info.name, "key": info.key, "dir": str(info.dir),
                              "cold_boot_s": info.cold_boot_s,
                              "snapshots": [f"{s.domain_type}-{s.index}" for s in info.snapshots()]}))
        elif args.cmd == "reap":
            from diffie.db import Database
            from diffie.sandbox.reaper import reap
            settings.ensure_dirs()
            db = Database(settings.resolved_database_url())
            print(json.dumps(reap(settings, db).as_dict()))
        else:
            from diffie.sandbox.host import ensure_daemons
            ensure_daemons(settings.libvirt_uri)
    except (DiffieError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
