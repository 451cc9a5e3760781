"""The corpus manifest of examples/shop/changes, its validation, and materialize_repo (git only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from diffie.errors import SourceError
from diffie.spec import load_spec
from diffie.verdict import CHANGE_KINDS, ERROR_KINDS
from examples.corpus import (
    CHANGES_DIR,
    SHOP_DIR,
    ChangeCase,
    ManifestError,
    load_manifest,
    materialize_repo,
)

# Issue 5's list, each with the change(s) that cover it.
REQUIRED = {
    "uncaught exception": ["page-error-home"],
    "console.error": ["console-error-cart"],
    "a missing script or image (404)": ["missing-script", "missing-image"],
    "an API returning 500": ["api-500-products"],
    "sign-in broken": ["signin-broken"],
    "a button removed": ["button-removed"],
    "a layout shift": ["layout-shift-banner"],
    "a colour change": ["colour-change-brand"],
    "overflow only at the mobile viewport": ["mobile-overflow-banner"],
    "an endpoint too slow for the step timeout": ["slow-quote-endpoint"],
    "a server change that fails to deploy": ["deploy-syntax-error"],
    "a regression only for a signed-in user": ["account-orders-500"],
    "a refactor": ["noop-refactor"],
    "a comment": ["noop-comment"],
    "CSS rewritten to the same result": ["noop-css-rewrite"],
    "a server-rendered current time": ["noise-server-time"],
    "a random id in the page": ["noise-random-id"],
    "Date.now()/Math.random() in client code": ["noise-client-clock-random"],
    "a CSS animation or spinner": ["noise-animation-spinner"],
    "a lazy-loaded image": ["noise-lazy-image"],
    "a web font": ["noise-web-font"],
    "a request whose timing varies": ["noise-variable-latency"],
}


@pytest.fixture(scope="module")
def cases() -> list[ChangeCase]:
    return load_manifest(CHANGES_DIR)


def by_id(cases: list[ChangeCase]) -> dict[str, ChangeCase]:
    return {c.id: c for c in cases}


def test_the_corpus_covers_every_case_of_issue_5(cases):
    ids = by_id(cases)
    missing = {what: [i for i in need if i not in ids] for what, need in REQUIRED.items()}
    assert {k: v for k, v in missing.items() if v} == {}
    assert len(cases) >= 20
    assert sum(c.is_regression for c in cases) >= 12


def test_expectations_match_the_categories(cases):
    for case in cases:
        if case.category in ("noop", "noise"):
            assert case.expected == "pass" and case.kinds == [], case.id
        else:
            assert case.expected in ("fail", "changed"), case.id
            assert case.kinds, case.id
        if case.expected == "changed":
            assert set(case.kinds) <= CHANGE_KINDS, case.id
        if case.expected == "fail":
            assert set(case.kinds) & ERROR_KINDS, case.id


def test_specific_expectations(cases):
    ids = by_id(cases)
    assert ids["deploy-syntax-error"].expected == "fail"
    assert ids["deploy-syntax-error"].kinds == ["deploy_error"]
    assert ids["mobile-overflow-banner"].viewports == ["mobile"]
    assert set(ids["account-orders-500"].flows or []) == {"signin", "account"}
    assert "step_failed" in ids["button-removed"].kinds
    assert ids["layout-shift-banner"].expected == "changed"
    assert ids["colour-change-brand"].expected == "changed"


def test_every_patch_file_is_in_the_manifest_and_exists(cases):
    named = {c.patch_path.name for c in cases}
    on_disk = {p.name for p in CHANGES_DIR.glob("*.patch")}
    assert named == on_disk
    for case in cases:
        assert case.patch_path.is_file()
        text = case.patch_path.read_text(encoding="utf-8")
        assert text.startswith("diff --git a/"), case.id
        assert "\n--- a/" in text or "\n--- /dev/null" in text


def test_patches_and_manifest_are_up_to_date_with_their_definitions():
    done = subprocess.run([sys.executable, str(CHANGES_DIR / "regenerate.py"), "--check"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_the_spec_is_valid_and_matches_the_manifest(cases):
    spec = load_spec(SHOP_DIR / ".diffie.yml")
    flows = {f.name: f for f in spec.flows}
    assert set(flows) >= {"home", "product", "signin", "account"}
    assert flows["account"].signed_in and not flows["signin"].signed_in
    assert [(c.name, c.value) for c in spec.session_cookies] == [("shop_session", "seeded-session-ada")]
    assert spec.sandbox is not None
    assert spec.sandbox.image == "shop" and spec.sandbox.source_dir == "/srv/shop"
    assert spec.sandbox.port == 8000 and spec.sandbox.ready_path == "/health"
    assert any("systemctl restart shop" in cmd for cmd in spec.sandbox.deploy)
    assert set(spec.viewports) == {"desktop", "mobile"}
    for case in cases:
        assert set(case.flows or []) <= set(flows), case.id
        assert set(case.viewports or []) <= set(spec.viewports), case.id
    # the slow endpoint must really be slower than the step timeout
    slow = by_id(cases)["slow-quote-endpoint"].patch_path.read_text()
    assert "time.sleep(12)" in slow and spec.timeout_ms < 12_000


# --- validation errors name the file, the line and the problem --------------------------------

def write_manifest(tmp_path: Path, body: str, patches: tuple[str, ...] = ("a.patch",)) -> Path:
    for name in patches:
        (tmp_path / name).write_text("diff --git a/x b/x\n", encoding="utf-8")
    (tmp_path / "manifest.yml").write_text(body, encoding="utf-8")
    return tmp_path


GOOD_ENTRY = """  - id: a
    patch: a.patch
    category: regression
    expected: fail
    kinds: [page_error]
    description: boom
"""


def test_a_minimal_manifest_loads(tmp_path):
    cases = load_manifest(write_manifest(tmp_path, "version: 1\nchanges:\n" + GOOD_ENTRY))
    assert [c.id for c in cases] == ["a"]
    assert cases[0].patch_path == (tmp_path / "a.patch").resolve()
    assert cases[0].line == 3


@pytest.mark.parametrize(("body", "line", "words"), [
    ("changes:\n" + GOOD_ENTRY.replace("a.patch", "missing.patch"), 3, "no such file"),
    ("changes:\n" + GOOD_ENTRY + GOOD_ENTRY, 8, "duplicate change id 'a'"),
    ("changes:\n" + GOOD_ENTRY.replace("expected: fail", "expected: maybe"), 5, "expected"),
    ("changes:\n" + GOOD_ENTRY.replace("[page_error]", "[page_eror]"), 6, "kinds"),
    ("changes:\n" + GOOD_ENTRY.replace("category: regression", "category: noise"), 2,
     "must expect pass"),
    ("changes:\n" + GOOD_ENTRY.replace("kinds: [page_error]", "kinds: [visual_change]"), 2,
     "at least one of"),
    ("changes:\n" + GOOD_ENTRY + "    colour: red\n", 8,
     "unknown field"),
    ("changes:\n" + GOOD_ENTRY.replace("    description: boom\n", ""), 2, "description"),
    ("changes:\n  - id: a\n    patch: [unclosed\n", 4, "not valid YAML"),
    ("changes: []\n", 1, "no changes"),
    ("flows: []\n", 1, "'changes' list"),
])
def test_bad_manifests_are_reported_with_file_and_line(tmp_path, body, line, words):
    with pytest.raises(ManifestError) as info:
        load_manifest(write_manifest(tmp_path, body))
    err = info.value
    assert err.file.endswith("manifest.yml")
    assert err.line == line, str(err)
    assert words in str(err)
    assert str(err).startswith(f"{err.file}:{line}: ")


def test_a_patch_outside_the_folder_is_refused(tmp_path):
    (tmp_path / "a.patch").write_text("diff --git a/x b/x\n", encoding="utf-8")
    inner = tmp_path / "corpus"
    inner.mkdir()
    body = "changes:\n" + GOOD_ENTRY.replace("patch: a.patch", "patch: ../a.patch")
    (inner / "manifest.yml").write_text(body, encoding="utf-8")
    with pytest.raises(ManifestError, match="must be inside"):
        load_manifest(inner)


def test_a_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(ManifestError, match="cannot read the manifest"):
        load_manifest(tmp_path)


# --- materialize_repo ---------------------------------------------------------------------------

def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          check=True).stdout


def test_materialize_repo_commits_base_then_the_patch(tmp_path, cases):
    case = by_id(cases)["cart-total-wrong"]
    base, head = materialize_repo(SHOP_DIR, case.patch_path, tmp_path / "repo")
    repo = tmp_path / "repo"
    assert git(repo, "rev-parse", "HEAD~1").strip() == base
    assert git(repo, "rev-parse", "HEAD").strip() == head != base
    assert git(repo, "diff", "--name-only", base, head).split() == ["app/money.py"]
    assert "FREE_SHIPPING_FROM_CENTS = 50\n" in (repo / "app/money.py").read_text()
    assert not (repo / "changes").exists()
    assert (repo / ".diffie.yml").is_file()
    assert git(repo, "status", "--porcelain") == ""


def test_materialize_repo_is_reproducible(tmp_path, cases):
    patch = by_id(cases)["noop-comment"].patch_path
    first = materialize_repo(SHOP_DIR, patch, tmp_path / "one")
    second = materialize_repo(SHOP_DIR, patch, tmp_path / "two")
    assert first == second


def test_materialize_repo_without_a_patch_makes_an_empty_head(tmp_path):
    base, head = materialize_repo(SHOP_DIR, None, tmp_path / "repo")
    assert base != head
    assert git(tmp_path / "repo", "diff", "--name-only", base, head) == ""


def test_materialize_repo_refuses_a_patch_that_does_not_apply(tmp_path):
    bad = tmp_path / "bad.patch"
    bad.write_text("diff --git a/app/money.py b/app/money.py\n--- a/app/money.py\n+++ b/app/money.py\n"
                   "@@ -1,1 +1,1 @@\n-this line is not there\n+nor this one\n", encoding="utf-8")
    with pytest.raises(SourceError, match="does not apply"):
        materialize_repo(SHOP_DIR, bad, tmp_path / "repo")


def test_materialize_repo_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "something").write_text("x")
    with pytest.raises(SourceError, match="not empty"):
        materialize_repo(SHOP_DIR, None, tmp_path / "repo")
