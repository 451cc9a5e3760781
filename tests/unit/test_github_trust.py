"""diffie.github.trust (approval policies) and recipes' allowed_repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffie.config import Settings
from diffie.errors import SandboxError
from diffie.github.trust import needs_approval, parse_overrides, policy_for, untrusted_head
from diffie.sandbox.recipe import check_image_allowed, content_text, load_recipe


@pytest.mark.parametrize(("policy", "fork", "association", "waits"), [
    ("forks", True, "OWNER", True), ("forks", False, "FIRST_TIME_CONTRIBUTOR", False),
    ("first-time", False, "FIRST_TIME_CONTRIBUTOR", True), ("first-time", False, "NONE", True),
    ("first-time", False, "FIRST_TIMER", True), ("first-time", False, "MEMBER", False),
    ("first-time", True, "MEMBER", True), ("all", False, "OWNER", True),
    ("none", True, "NONE", False),
])
def test_needs_approval(policy: str, fork: bool, association: str, waits: bool) -> None:
    assert needs_approval(policy, is_fork=fork, association=association) is waits


def test_untrusted_head() -> None:
    assert untrusted_head(is_fork=True, association="OWNER")
    assert untrusted_head(is_fork=False, association="CONTRIBUTOR")
    assert not untrusted_head(is_fork=False, association="collaborator")


def test_policy_overrides_by_repository_then_owner(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, github_require_approval="first-time",
                        github_require_approval_by="Acme=all, acme/docs=none")  # type: ignore[arg-type]
    assert policy_for(settings, "acme", "docs") == "none"
    assert policy_for(settings, "ACME", "shop") == "all"
    assert policy_for(settings, "octo", "shop") == "first-time"
    for bad in ("acme", "acme=sometimes", "a/b/c=all"):
        with pytest.raises(ValueError, match="DIFFIE_GITHUB_REQUIRE_APPROVAL_BY"):
            parse_overrides(bad)


RECIPE = """\
ready: {command: 'true'}
packages: [tar]

# who may use it
allowed_repositories:
  - acme/*
  - octo/site
"""


def test_allowed_repositories_globs_and_the_content_hash(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "recipe.yml").write_text(RECIPE)
    check_image_allowed(tmp_path, "img", "acme/shop")
    check_image_allowed(tmp_path, "img", "Octo/Site")
    with pytest.raises(SandboxError, match="image 'img' may not be used by evil/shop.*"
                                           "allowed_repositories"):
        check_image_allowed(tmp_path, "img", "evil/shop")
    assert content_text(RECIPE) == "ready: {command: 'true'}\npackages: [tar]\n"
    with_policy = load_recipe(tmp_path, "img").key
    (tmp_path / "img" / "recipe.yml").write_text(RECIPE.replace("octo/site", "octo/*"))
    assert load_recipe(tmp_path, "img").key == with_policy      # who may use it: same image
    (tmp_path / "img" / "recipe.yml").write_text("ready: {command: 'true'}\npackages: [tar]\n")
    assert load_recipe(tmp_path, "img").key == with_policy
    (tmp_path / "img" / "recipe.yml").write_text("ready: {command: 'true'}\npackages: [gzip]\n")
    assert load_recipe(tmp_path, "img").key != with_policy      # what is in it: another image
