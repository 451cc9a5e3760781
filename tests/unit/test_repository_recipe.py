"""A repository's own image recipe (``sandbox.recipe``): keyed by content (not file modes),
untrusted (no build-host fields, no files from outside the tree, no writes through the
tree's symlinks), and each side of a run uses its own revision's recipe."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from diffie.control import Lines
from diffie.errors import SandboxError, SpecError
from diffie.fakes import FakeImageBuilder, FakeSandbox, FilesSource, fake_deps
from diffie.pipeline import run_change
from diffie.run_store import ChangeInput
from diffie.sandbox import provision
from diffie.sandbox.recipe import (
    VmShape,
    load_recipe,
    load_repository_recipe,
    repository_image_name,
)
from diffie.spec import parse_spec
from tests.conftest import make_settings
from tests.unit.test_run_change import APP, SPEC

RECIPE = """\
packages: [python3]
ports: [8000]
files:
  - src: ../app
    dest: /srv/app
enable: [app.service]
ready:
  command: "true"
"""


def _tree(root: Path, recipe: str = RECIPE) -> Path:
    (root / ".diffie").mkdir(parents=True)
    (root / ".diffie" / "image.yml").write_text(recipe)
    (root / "app").mkdir()
    (root / "app" / "main.py").write_text("print('hi')\n")
    return root


def test_the_key_follows_content_and_the_executable_bit_not_the_umask(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "repo")
    main = tree / "app" / "main.py"
    main.chmod(0o664)
    first = load_repository_recipe(tree, ".diffie/image.yml", name="acme-shop").key
    main.chmod(0o644)                     # `git checkout -- file` under another umask
    assert load_repository_recipe(tree, ".diffie/image.yml", name="acme-shop").key == first
    main.chmod(0o755)                     # executable: what git records, so another image
    assert load_repository_recipe(tree, ".diffie/image.yml", name="acme-shop").key != first
    main.chmod(0o644)
    main.write_text("print('changed')\n")
    assert load_repository_recipe(tree, ".diffie/image.yml", name="acme-shop").key != first


def test_an_operator_recipe_is_keyed_without_modes_too(tmp_path: Path) -> None:
    images = tmp_path / "vm_images"
    (images / "demo").mkdir(parents=True)
    recipe = images / "demo" / "recipe.yml"
    recipe.write_text(RECIPE.replace("../app", "app"))
    (images / "demo" / "app").mkdir()
    (images / "demo" / "app" / "x.py").write_text("x = 1\n")
    recipe.chmod(0o664)
    first = load_recipe(images, "demo").key
    recipe.chmod(0o644)
    assert load_recipe(images, "demo").key == first


@pytest.mark.parametrize(("extra", "field", "line"), [
    ("run:\n  - touch /etc/owned\n", "run", 9),
    ("mirror: http://attacker.example/debian\n", "mirror", 9),
    ("allowed_repositories: [acme/*]\n", "allowed_repositories", 9),
])
def test_fields_that_act_on_the_build_host_are_refused(tmp_path: Path, extra: str, field: str,
                                                      line: int) -> None:
    tree = _tree(tmp_path / "repo", RECIPE + extra)
    with pytest.raises(SandboxError, match=rf"^\.diffie/image\.yml:{line} \({field}\): a "
                       rf"repository's recipe may not use '{field}'"):
        load_repository_recipe(tree, ".diffie/image.yml", name="r")


def test_files_from_outside_the_tree_are_refused(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "repo", RECIPE.replace("../app", "../../../etc"))
    with pytest.raises(SandboxError, match=r"\(files\[0\]\.src\): '\.\./\.\./\.\./etc' leaves "
                                           "the repository"):
        load_repository_recipe(tree, ".diffie/image.yml", name="r")
    tree2 = _tree(tmp_path / "repo2")
    (tree2 / "app" / "secret").symlink_to("/etc/shadow")
    os.symlink("/etc", tree2 / "hostetc")
    (tree2 / ".diffie" / "image.yml").write_text(RECIPE.replace("../app", "../hostetc"))
    with pytest.raises(SandboxError, match="leaves the repository"):
        load_repository_recipe(tree2, ".diffie/image.yml", name="r")


def test_a_recipe_symlinked_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    outside = _tree(tmp_path / "elsewhere")
    tree = tmp_path / "repo"
    tree.mkdir()
    (tree / "image.yml").symlink_to(outside / ".diffie" / "image.yml")
    with pytest.raises(SandboxError, match="leaves the repository"):
        load_repository_recipe(tree, "image.yml", name="r")
    with pytest.raises(SandboxError, match=r"^missing\.yml: the recipe named by sandbox\.recipe "
                                           "is not in this revision"):
        load_repository_recipe(tree, "missing.yml", name="r")


def test_copies_and_writes_never_follow_the_trees_symlinks_out_of_it(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "hostname").write_text("the host's\n")
    tree = tmp_path / "rootfs"
    (tree / "etc").mkdir(parents=True)
    (tree / "srv").symlink_to(str(host))              # absolute: a path of the build host
    (tree / "etc" / "hostname").symlink_to(str(host / "hostname"))
    repo = _tree(tmp_path / "repo")
    loaded = load_repository_recipe(repo, ".diffie/image.yml", name="r")
    provision.copy_files(loaded, tree)
    provision.write_system_files(loaded, tree)
    assert (host / "hostname").read_text() == "the host's\n"     # the link was replaced
    assert not (host / "app").exists()
    assert (tree / "srv").is_symlink()
    # /srv/app went where the guest would see it: the link's target taken inside the tree
    inside = tree / str(host).lstrip("/") / "app" / "main.py"
    assert inside.read_text() == "print('hi')\n"
    assert oct(inside.stat().st_mode & 0o777) == "0o644"
    assert (tree / "etc" / "hostname").read_text() == "r\n"


def test_the_spec_names_an_image_or_a_recipe_in_the_tree(tmp_path: Path) -> None:
    base = "flows: [{name: a, steps: [{goto: /}]}]\nsandbox:\n"
    sandbox = parse_spec(base + "  recipe: .diffie/image.yml\n").sandbox
    assert sandbox is not None and sandbox.recipe == ".diffie/image.yml"
    with pytest.raises(SpecError, match=r"not both and not neither"):
        parse_spec(base + "  image: shop\n  recipe: .diffie/image.yml\n")
    with pytest.raises(SpecError, match=r"not both and not neither"):
        parse_spec(base + "  port: 8000\n")
    with pytest.raises(SpecError, match=r":3 \(sandbox\.recipe\): .*relative path inside"):
        parse_spec(base + "  recipe: ../outside.yml\n")
    assert repository_image_name("Acme/Shop.Web") == "acme-shop-web"
    assert repository_image_name("///") == "repo"


def _run(tmp_path: Path, base: dict[str, str], head: dict[str, str], *,
         untrusted: bool = False) -> tuple[str, FakeSandbox, FakeImageBuilder, str]:
    settings = make_settings(tmp_path / "data")
    sandbox, builder = FakeSandbox(), FakeImageBuilder()
    deps = fake_deps(settings, sandbox=sandbox, sources={"repo": FilesSource(base, head)},
                     build_image=builder)
    change = ChangeInput(run_id=secrets.token_hex(8), mode="repo", repo="fake", base_rev="b",
                         head_rev="h", repository="acme/shop", untrusted_head=untrusted)
    lines: list[str] = []
    verdict = run_change(change, deps, Lines(lines.append))
    return verdict.status, sandbox, builder, verdict.reason or "\n".join(lines)


REPO_SPEC = SPEC.replace("  image: shop\n", "  recipe: .diffie/image.yml\n")
REPO_APP = {**APP, ".diffie.yml": REPO_SPEC, ".diffie/image.yml": RECIPE,
            "app/main.py": "print('hi')\n"}


def test_each_side_restores_its_own_revisions_image(tmp_path: Path) -> None:
    head = {**REPO_APP, ".diffie/image.yml": RECIPE.replace("[python3]", "[python3, curl]")}
    status, sandbox, builder, why = _run(tmp_path, REPO_APP, head)
    assert status == "pass", why
    base_key, head_key = (loaded.key for loaded in builder.built)
    assert base_key != head_key and base_key.startswith("acme-shop-")
    assert [e for e in sandbox.log if e[0] == "lease"] == [("lease", base_key),
                                                          ("lease", head_key)]
    assert "curl" in builder.built[1].recipe.packages


def test_one_recipe_is_built_once_and_a_base_without_it_uses_the_heads(tmp_path: Path) -> None:
    base = {k: v for k, v in REPO_APP.items() if k != ".diffie/image.yml"}
    status, sandbox, builder, why = _run(tmp_path, base, REPO_APP)
    assert status == "pass", why
    (only,) = builder.built
    assert [e for e in sandbox.log if e[0] == "lease"] == [("lease", only.key)] * 2


def test_an_untrusted_head_gets_the_bases_recipe(tmp_path: Path) -> None:
    head = {**REPO_APP, ".diffie/image.yml": RECIPE.replace("[python3]", "[python3, curl]")}
    status, _, builder, why = _run(tmp_path, REPO_APP, head, untrusted=True)
    assert status == "pass", why
    (only,) = builder.built
    assert "curl" not in only.recipe.packages


def test_a_bad_head_recipe_is_an_error_naming_file_line_and_field(tmp_path: Path) -> None:
    head = {**REPO_APP, ".diffie/image.yml": RECIPE + "run: [id]\n"}
    status, sandbox, _, why = _run(tmp_path, REPO_APP, head)
    assert status == "error"
    assert "head: .diffie/image.yml:9 (run): a repository's recipe may not use 'run'" in why
    assert sandbox.log == []


def test_a_repository_recipe_asks_for_no_bigger_guest_than_the_operator_allows(
        tmp_path: Path) -> None:
    tree = _tree(tmp_path / "repo", RECIPE + "vm: {memory_mib: 65536, vcpus: 2}\n")
    caps = VmShape(memory_mib=4096, vcpus=4, disk_mib=16384)
    with pytest.raises(SandboxError, match=r"^\.diffie/image\.yml:9 \(vm\.memory_mib\): 65536 "
                       r"is more than the operator allows for a repository's image \(4096; "
                       r"DIFFIE_MAX_REPO_VM_MEMORY_MIB\)"):
        load_repository_recipe(tree, ".diffie/image.yml", name="r", max_vm=caps)
    small = _tree(tmp_path / "small", RECIPE + "vm: {memory_mib: 2048}\n")
    assert load_repository_recipe(small, ".diffie/image.yml", name="r",
                                  max_vm=caps).recipe.vm.memory_mib == 2048
