"""The second example app, for real: examples/tasks (Express + pg on Node.js, an esbuild
front end, SQL migrations), whose production shape is in its own tree (``.diffie/image.yml``:
Debian's nodejs, npm and PostgreSQL). ``diffie verify`` builds the image (the recipe's packages
installed by apt over the cached base tree), and each side's deploy runs the app's stages in
its VM: ``npm ci`` through the package proxy, ``npm run build``, the migration runner, a
restart. The head adds an npm dependency (dayjs, in package.json and package-lock.json) and
shows each task's date with it: ``changed``, with visual findings only.

One slot and one viewport: under TCG Debian's Node.js (built without a startup snapshot) takes
seconds to start, and ``npm ci`` minutes; the corpus (``diffie bench corpus --changes
examples/tasks/changes``) covers the other changes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from examples.corpus import materialize_repo
from tests.system.conftest import REPO, cli_env, vm_settings

pytestmark = [pytest.mark.system, pytest.mark.timeout(2400)]

TASKS = REPO / "examples" / "tasks"
PATCH = TASKS / "changes" / "add-dependency-dayjs.patch"
MOBILE = "  mobile: {width: 390, height: 844, mobile: true}\n"


def test_the_task_board_with_a_new_npm_dependency(vm_host: None, tmp_path: Path) -> None:
    settings = vm_settings(tmp_path / "data", vm_slots=1)
    env = cli_env(settings)
    app = tmp_path / "app"
    shutil.copytree(TASKS, app, ignore=shutil.ignore_patterns("changes", "node_modules"))
    spec = (app / ".diffie.yml").read_text()
    assert MOBILE in spec
    (app / ".diffie.yml").write_text(spec.replace(MOBILE, ""))
    base, head = materialize_repo(app, PATCH, tmp_path / "repo")

    run = subprocess.run([sys.executable, "-m", "diffie.cli", "verify", "--repo",
                          str(tmp_path / "repo"), "--base", base, "--head", head, "--wait",
                          "--json"], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=2300)
    verdict = json.loads(run.stdout)
    assert run.returncode == 3, f"{verdict.get('status')}: {verdict.get('reason')}\n" \
                                f"{run.stderr[-4000:]}"
    assert verdict["status"] == "changed"
    findings = verdict["findings"]
    assert {f["kind"] for f in findings} == {"visual_change"}
    assert {(f["flow"], f["viewport"]) for f in findings} <= {("board", "desktop"),
                                                              ("add-task", "desktop")}

    run_dir = settings.data_dir / "runs" / verdict["run_id"]
    progress = (run_dir / "progress.log").read_text()
    assert "phase: image" in progress
    assert re.search(r"image from \.diffie/image\.yml \(repo-[0-9a-f]{16}\)", progress)
    for stage in ("build: npm ci --no-audit --no-fund → exit 0",
                  "build: npm run build → exit 0",
                  "migrate: runuser -u tasks -- node server/migrate.js → exit 0",
                  "deploy: systemctl restart tasks → exit 0"):
        assert progress.count(stage) == 2, stage            # base and head
    report = (run_dir / "index.html").read_text()
    for side in ("base", "head"):
        assert re.search(rf"<th>{side} migrations</th><td>[^<]*migrate: 0 applied, 1 in total",
                         report), side
