"""Wall time of one URL-mode verification of the sample app (all flows, every viewport,
base and head), through the whole path: submit → queue (embedded broker) → worker → verdict.

    python -m benchmarks.urlmode [--change ID] [--no-noise-floor]

Base and head are the unpatched shop (or ``--change``'s patch as head), each served on the
host by :class:`examples.corpus.ShopServer` against its own PostgreSQL database. The last line
is machine-readable: ``urlmode: verify_s=<s>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from diffie import run_store
from diffie.composition import build_context
from diffie.config import Settings
from diffie.git_source import checkout
from diffie.models import FINISHED, Run
from examples.corpus import CHANGES_DIR, SHOP_DIR, ShopServer, load_manifest, materialize_repo
from workers.embedded import EmbeddedWorker


def _trees(tmp: Path, change_id: str | None) -> tuple[Path, Path]:
    patch = None
    if change_id:
        case = next(c for c in load_manifest(CHANGES_DIR) if c.id == change_id)
        patch = CHANGES_DIR / case.patch
    repo = tmp / "repo"
    base_rev, head_rev = materialize_repo(SHOP_DIR, patch, repo)
    base, head = tmp / "base", tmp / "head"
    checkout(repo, base_rev, base)
    checkout(repo, head_rev, head)
    return base, head


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--change", default=None, help="a change id of the corpus (default: none)")
    p.add_argument("--no-noise-floor", action="store_true", help="skip the second head render")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="diffie-bench-") as tmp_s:
        tmp = Path(tmp_s)
        settings = Settings(data_dir=tmp / "data", noise_floor=not args.no_noise_floor,
                            database_url="", broker_url="", api_tokens=[])
        ctx = build_context(settings)
        base_dir, head_dir = _trees(tmp, args.change)
        spec_text = (base_dir / ".diffie.yml").read_text()
        with ShopServer(base_dir) as base, ShopServer(head_dir) as head, \
                EmbeddedWorker(ctx.celery) as _worker:
            started = time.perf_counter()
            run_id = run_store.submit_url(ctx.db, base_url=base.url, head_url=head.url,
                                     spec_text=spec_text, title="benchmark")
            ctx.enqueue(run_id)
            while True:
                with ctx.db.session() as s:
                    run = s.get(Run, run_id)
                    assert run is not None
                    status, verdict = run.status, run.verdict or {}
                if status in FINISHED:
                    break
                time.sleep(0.1)
            elapsed = time.perf_counter() - started
        ctx.close()
        print(f"run {run_id}: {status}, verdict {verdict.get('status')} "
              f"({verdict.get('summary')}); flows={verdict.get('flows')} "
              f"viewports={verdict.get('viewports')} noise_floor={settings.noise_floor} "
              f"parallel_sides={settings.parallel_sides}",
              file=sys.stderr)
        print(f"urlmode: verify_s={elapsed:.2f}")
    return 0 if status == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
