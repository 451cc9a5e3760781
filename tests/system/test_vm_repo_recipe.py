"""The production shape in the app's own repository, for real: the shop with its recipe in
``.diffie/image.yml`` (not in Diffie's ``vm_images/``), verified by ``diffie verify`` as a user
runs it. The run builds the image itself (its progress in the run's) and restores it in VMs.
The app has two services (the shop, and a file server the deploy starts), and a flow
that reads the second by name. The head adds a dependency (``requirements.txt``) that its
deploy installs with pip through the package proxy, so the layout-shift change is
``changed``; a head naming a package that does not exist is a ``deploy_error`` whose message is
pip's. ``diffie image list`` shows the repository
image and ``diffie shell`` opens it (and has no way out once no deploy is running)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from diffie.sandbox.store import ImageInfo
from examples.corpus import materialize_repo
from examples.repo_recipe import MISSING, shop_with_its_recipe
from tests.system.conftest import REPO, cli_env, vm_settings

SHOP = REPO / "examples" / "shop"
PATCH = SHOP / "changes" / "layout-shift-banner.patch"

def commit(repo: Path, parent: str, files: dict[str, str], message: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("checkout", "-q", "--detach", parent)
    for rel, text in files.items():
        (repo / rel).write_text(text)
        git("add", rel)
    git("commit", "-q", "-m", message)
    return git("rev-parse", "HEAD")


def diffie(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "diffie.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_a_repository_brings_its_own_image(shop_image: ImageInfo, tmp_path: Path) -> None:
    # shop_image: the same Debian package set, so the debootstrap step is already cached; one
    # slot (one cold boot to build) and one flow × viewport: this test is about the image
    settings = vm_settings(tmp_path / "data", vm_slots=1)
    env = cli_env(settings)
    # two services: the shop, and the seed's state/ over HTTP (a flow addresses it by name)
    app = shop_with_its_recipe(tmp_path / "app", flows=["home"], viewports=["desktop"],
                               services=True)
    repo = tmp_path / "repo"
    base, shifted = materialize_repo(app, PATCH, repo)
    head = commit(repo, shifted, {"requirements.txt": "markdown==3.4.1\n"}, "a dependency")
    missing = commit(repo, shifted, {"requirements.txt": f"{MISSING}==1.0\n"}, "a typo")

    checked = diffie("spec", "check", str(repo / ".diffie.yml"), env=env, timeout=120)
    assert checked.returncode == 0, checked.stderr
    assert ".diffie/image.yml: ok — image repo-" in checked.stdout

    run = diffie("verify", "--repo", str(repo), "--base", base, "--head", head, "--wait",
                 "--json", env=env, timeout=1500)
    verdict = json.loads(run.stdout)
    assert run.returncode == 3, f"{verdict.get('status')}: {verdict.get('reason')}\n" \
                                f"{run.stderr[-4000:]}"
    assert verdict["status"] == "changed"
    assert {f["kind"] for f in verdict["findings"]} == {"visual_change"}
    progress = (settings.data_dir / "runs" / verdict["run_id"] / "progress.log").read_text()
    assert "phase: image" in progress
    assert progress.count("flow files @ desktop: ok") == 2          # base and head
    assert re.search(r"ready at http://127\.0\.0\.1:\d+/seeded\.txt", progress)
    (key,) = set(re.findall(r"image from \.diffie/image\.yml \((repo-[0-9a-f]{16})\)", progress))
    report = (settings.data_dir / "runs" / verdict["run_id"] / "index.html").read_text()
    assert f".diffie/image.yml ({key})" in report
    for side in ("base", "head"):          # the migration's output, per side, in the report
        assert re.search(rf"<th>{side} migrations</th><td>[^<]*initdb: schema and seed data "
                         "are in place", report), side

    bad = diffie("verify", "--repo", str(repo), "--base", base, "--head", missing, "--wait",
                 "--json", env=env, timeout=900)
    failed = json.loads(bad.stdout)
    assert bad.returncode == 1, f"{failed.get('status')}: {failed.get('reason')}"
    (finding,) = failed["findings"]
    assert finding["kind"] == "deploy_error"
    assert f"No matching distribution found for {MISSING}==1.0" in \
        finding["details"]["output_tail"]

    listed = json.loads(diffie("image", "list", "--json", env=env, timeout=120).stdout)
    (row,) = [r for r in listed if r["key"] == key]
    assert row["origin"] == "repository" and row["source"] == ".diffie/image.yml"
    assert row["slots"] == 1

    shell = diffie("shell", str(repo / ".diffie" / "image.yml"), "--repo", str(repo),
                   "-c", "id -un shop", "-c", "systemctl is-active shop",
                   "-c", "python3 -c 'import markdown' 2>/dev/null || echo no-markdown-in-image",
                   "-c", "cat /srv/shop/state/seeded.txt", env=env, timeout=300)
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.split("\n")[:4] == ["shop", "active", "no-markdown-in-image",
                                             "seeded at build time"]
    assert "VM destroyed" in shell.stderr
