"""``diffie status | spec check | image check | image list``: validate and show without running,
through the real CLI entry point; paths never depend on the current directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_repository_recipe import RECIPE

REPO = Path(__file__).resolve().parents[2]


def diffie(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "diffie.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DIFFIE_", "XDG_"))}
    return {**clean, "HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "xdg"),
            "DIFFIE_IMAGE_CACHE_DIR": str(tmp_path / "images"), "PYTHONPATH": str(REPO)}


def test_the_data_dir_is_the_same_from_any_directory(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = diffie("status", "--field", "data_dir", cwd=tmp_path / "a", env=env)
    second = diffie("status", "--field", "data_dir", cwd=tmp_path / "b", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout == f"{tmp_path / 'xdg' / 'diffie'}\n"
    everything = diffie("status", cwd=tmp_path, env=env)
    assert f"vm_images_dir    {REPO / 'vm_images'}" in everything.stdout
    assert "image_cache_dir" in everything.stdout
    bad = diffie("status", "--field", "nope", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "--field: no field 'nope'; fields: data_dir" in bad.stderr


def test_spec_check_validates_the_spec_and_its_repository_recipe(tmp_path: Path,
                                                                 env: dict[str, str]) -> None:
    shop = diffie("spec", "check", str(REPO / "examples/shop/.diffie.yml"), cwd=tmp_path, env=env)
    assert shop.returncode == 0, shop.stderr
    assert "ok — 4 flow(s) × viewports = 8 pair(s)" in shop.stdout
    assert "image shop: ok — image shop-" in shop.stdout
    repo = tmp_path / "repo"
    (repo / ".diffie").mkdir(parents=True)
    (repo / "app").mkdir()
    (repo / "app" / "main.py").write_text("print(1)\n")
    (repo / ".diffie" / "image.yml").write_text(RECIPE)
    (repo / ".diffie.yml").write_text("flows: [{name: a, steps: [{goto: /}]}]\n"
                                      "sandbox: {recipe: .diffie/image.yml}\n")
    ok = diffie("spec", "check", cwd=repo, env=env)
    assert ok.returncode == 0, ok.stderr
    assert ".diffie/image.yml: ok — image repo-" in ok.stdout
    assert "not built yet (a run builds it)" in ok.stdout
    (repo / ".diffie" / "image.yml").write_text(RECIPE + "run: [id]\n")
    bad = diffie("spec", "check", cwd=repo, env=env)
    assert bad.returncode == 2
    assert ".diffie/image.yml:9 (run): a repository's recipe may not use 'run'" in bad.stderr
    (repo / ".diffie.yml").write_text("flows: [{name: a, steps: [{goto: 3}]}]\n")
    bad = diffie("spec", "check", cwd=repo, env=env)
    assert bad.returncode == 2 and ".diffie.yml:1 (flows[0].steps[0]" in bad.stderr


def test_image_check_and_list(tmp_path: Path, env: dict[str, str]) -> None:
    shop = diffie("image", "check", "shop", cwd=tmp_path, env=env)
    assert shop.returncode == 0, shop.stderr
    tasks = REPO / "examples" / "tasks"       # a recipe path from here, or from --repo
    for path in ("examples/tasks/.diffie/image.yml", ".diffie/image.yml"):
        got = diffie("image", "check", path, "--repo", str(tasks), cwd=REPO, env=env)
        assert got.returncode == 0 and f"{path}: ok — image tasks-" in got.stdout, got.stderr
    outside = diffie("image", "check", "vm_images/shop/recipe.yml", "--repo", str(tasks),
                     cwd=REPO, env=env)
    assert outside.returncode == 2 and "is not inside the repository" in outside.stderr
    assert "not built yet (diffie image build shop)" in shop.stdout
    missing = diffie("image", "check", "nope", cwd=tmp_path, env=env)
    assert missing.returncode == 2 and "no recipe for image 'nope'" in missing.stderr
    assert "known images: shop" in missing.stderr
    empty = diffie("image", "list", cwd=tmp_path, env=env)
    assert empty.returncode == 0 and "no images in" in empty.stdout
    built = tmp_path / "images" / "shop-0123456789abcdef"
    built.mkdir(parents=True)
    (built / "base.qcow2").write_bytes(b"x")
    (built / "meta.json").write_text(json.dumps({"name": "shop", "slots": {}}))
    rows = json.loads(diffie("image", "list", "--json", cwd=tmp_path, env=env).stdout)
    assert [(r["key"], r["origin"], r["current"]) for r in rows] == [
        ("shop-0123456789abcdef", "operator", False)]
