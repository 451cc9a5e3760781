"""examples/tasks, the second example app: its spec and in-tree recipe are valid, its corpus
has what issue 11 asks (a new npm dependency, a schema migration, at least 8 changes), and
every patch applies to the app (materialize_repo: git only)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from diffie.sandbox.recipe import load_repository_recipe
from diffie.spec import load_spec
from examples.corpus import load_manifest, materialize_repo

TASKS = Path(__file__).resolve().parents[2] / "examples" / "tasks"
CHANGES = TASKS / "changes"


def test_spec_and_recipe_are_valid_and_the_recipe_lives_in_the_tree() -> None:
    spec = load_spec(TASKS / ".diffie.yml")
    assert spec.sandbox is not None and spec.sandbox.recipe == ".diffie/image.yml"
    assert spec.sandbox.build == ["npm ci --no-audit --no-fund", "npm run build"]
    assert spec.sandbox.migrate and spec.sandbox.port == 3000
    loaded = load_repository_recipe(TASKS, spec.sandbox.recipe, name="tasks")
    assert {"nodejs", "npm", "postgresql"} <= set(loaded.recipe.packages)
    assert loaded.recipe.ports == [3000]


def test_the_corpus_has_a_dependency_a_migration_and_eight_changes() -> None:
    cases = {c.id: c for c in load_manifest(CHANGES)}
    assert len(cases) >= 8
    assert {p.name for p in CHANGES.glob("*.patch")} == {c.patch_path.name for c in cases.values()}
    dep = cases["add-dependency-dayjs"].patch_path.read_text()
    assert "+++ b/package.json" in dep and "+++ b/package-lock.json" in dep and '"dayjs"' in dep
    migration = cases["migration-priority"].patch_path.read_text()
    assert "+++ b/migrations/002_priority.sql" in migration
    assert cases["missing-dependency"].kinds == ["deploy_error"]
    assert cases["noop-refactor"].expected == "pass"


@pytest.mark.parametrize("case_id", sorted(c.id for c in load_manifest(CHANGES)))
def test_every_change_applies(case_id: str, tmp_path: Path) -> None:
    (case,) = [c for c in load_manifest(CHANGES) if c.id == case_id]
    base, head = materialize_repo(TASKS, case.patch_path, tmp_path / "repo")
    assert base != head
    files = subprocess.run(["git", "-C", str(tmp_path / "repo"), "ls-files"], check=True,
                           capture_output=True, text=True).stdout.split()
    assert ".diffie/image.yml" in files and "package-lock.json" in files
    assert not any(f.startswith(("node_modules/", "changes/")) for f in files)
    json.loads((tmp_path / "repo" / "package-lock.json").read_text())   # still valid JSON
