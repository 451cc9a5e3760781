"""``--junit-out FILE`` / ``--ctrf-out FILE``: a finished run's JUnit XML and CTRF JSON where a
CI system collects test reports (GitHub Actions, GitLab CI, Jenkins).

The run's own ``junit.xml`` / ``ctrf.json`` (one test case per flow × viewport) are copied
from its folder (local) or downloaded from the server (``--server``). A run that ended before
its reports were written (cancelled, an error before the browser ran) still gets both, made
from its verdict, so a CI step that uploads them never finds them missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffie.render import render_ctrf, render_junit
from diffie.verdict import Verdict, error_verdict

Fetch = Callable[[str], bytes | None]     # an artifact of the run by name, None when absent


def _verdict(snap: dict[str, Any]) -> Verdict:
    if snap.get("verdict"):
        return Verdict.model_validate(snap["verdict"])
    return error_verdict(str(snap["id"]), str(snap.get("reason") or f"the run is "
                                               f"{snap.get('status')}"))


def write_outputs(snap: dict[str, Any], fetch: Fetch, *, junit: str | None,
                  ctrf: str | None) -> list[Path]:
    """Write the asked files; the paths written."""
    written = []
    for target, name in ((junit, "junit.xml"), (ctrf, "ctrf.json")):
        if not target:
            continue
        data = fetch(name)
        if data is None:
            verdict = _verdict(snap)
            data = (render_junit(verdict, {}).encode() if name == "junit.xml" else
                    json.dumps(render_ctrf(verdict, {}), indent=2).encode())
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def local_fetch(artifacts_dir: Path, run_id: str) -> Fetch:
    def fetch(name: str) -> bytes | None:
        path = artifacts_dir / run_id / name
        return path.read_bytes() if path.is_file() else None
    return fetch
