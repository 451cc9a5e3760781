"""Recipes: validation errors name file, line and field; the content hash tracks the inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffie.errors import SandboxError
from diffie.sandbox.recipe import BASE_PACKAGES, load_recipe, parse_recipe

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
packages: [python3]
ports: [8000]
files:
  - src: app
    dest: /srv/app
ready:
  command: "true"
"""


def _recipe_dir(tmp_path: Path, text: str = MINIMAL) -> Path:
    images = tmp_path / "vm_images"
    (images / "demo").mkdir(parents=True)
    (images / "demo" / "recipe.yml").write_text(text)
    (images / "demo" / "app").mkdir()
    (images / "demo" / "app" / "main.py").write_text("print('hi')\n")
    return images


def test_the_shop_recipe_is_valid() -> None:
    loaded = load_recipe(REPO / "vm_images", "shop")
    assert loaded.key.startswith("shop-") and len(loaded.key) == len("shop-") + 16
    assert set(BASE_PACKAGES) <= set(loaded.recipe.all_packages())
    assert "postgresql" in loaded.recipe.all_packages()
    assert loaded.recipe.ports == [8000]
    assert loaded.recipe.ready.http is not None and loaded.recipe.ready.http.path == "/health"
    assert "shop.service" in loaded.recipe.enable


@pytest.mark.parametrize(("text", "where", "what"), [
    ("ready: {command: x}\nbogus: 1\n", ":2 (bogus)", "unknown field 'bogus'"),
    ("packages: [python3]\n", ":1 (ready)", "missing required field 'ready'"),
    ("ready: {command: x}\nfiles:\n  - {src: a, dest: relative/path}\n", ":3 (files[0].dest)",
     "absolute guest path"),
    ("ready: {command: x}\nports: [8000, 8000]\n", ":2 (ports)", "listed twice"),
    ("ready: {command: x}\nenable: [not a unit]\n", ":2 (enable)", "not a systemd unit"),
    ("ready: {command: x}\npackages: ['Bad Name']\n", ":2 (packages)", "not a Debian package"),
    ("ready: [\n", ":2", "not valid YAML"),
    ("- just a list\n", ":1", "a recipe is a mapping"),
])
def test_errors_name_file_line_and_field(text: str, where: str, what: str) -> None:
    with pytest.raises(SandboxError) as err:
        parse_recipe(text, file="recipe.yml")
    message = str(err.value)
    assert message.startswith("recipe.yml"), message
    assert where in message and what in message, message


def test_unknown_image_lists_the_known_ones(tmp_path: Path) -> None:
    images = _recipe_dir(tmp_path)
    with pytest.raises(SandboxError, match="known images: demo"):
        load_recipe(images, "nope")
    with pytest.raises(SandboxError, match="not an image name"):
        load_recipe(images, "../etc")


def test_hash_changes_with_the_recipe_and_copied_files_only(tmp_path: Path) -> None:
    images = _recipe_dir(tmp_path)
    first = load_recipe(images, "demo")
    assert load_recipe(images, "demo").key == first.key          # stable
    (images / "demo" / "app" / "__pycache__").mkdir()
    (images / "demo" / "app" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert load_recipe(images, "demo").key == first.key          # excluded files do not count
    (images / "demo" / "app" / "main.py").write_text("print('changed')\n")
    second = load_recipe(images, "demo")
    assert second.key != first.key
    (images / "demo" / "recipe.yml").write_text(MINIMAL + "warmup: ['true']\n")
    assert load_recipe(images, "demo").key not in (first.key, second.key)


def test_files_outside_the_recipe_dir_are_hashed(tmp_path: Path) -> None:
    app = tmp_path / "outside"
    app.mkdir()
    (app / "a.txt").write_text("1")
    images = _recipe_dir(tmp_path, MINIMAL.replace("src: app", "src: ../../outside"))
    first = load_recipe(images, "demo").key
    (app / "a.txt").write_text("2")
    assert load_recipe(images, "demo").key != first


def test_missing_source_is_reported(tmp_path: Path) -> None:
    images = _recipe_dir(tmp_path, MINIMAL.replace("src: app", "src: missing"))
    with pytest.raises(SandboxError, match=r"\(files\[0\].src\): 'missing' does not exist"):
        load_recipe(images, "demo")
