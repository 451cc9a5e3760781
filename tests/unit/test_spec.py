"""The .diffie.yml format: short forms, defaults, and errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffie.errors import SpecError
from diffie.spec import DEFAULT_VIEWPORTS, load_spec, parse_spec

GOOD = """\
version: 1
timeout_ms: 4000
masks: [".clock"]
session_cookies:
  - {name: sid, value: abc}
flows:
  - name: checkout
    steps:
      - goto: /products
      - click: "#add"
      - fill: {selector: "#email", value: "ada@example.com"}
      - press: Enter
      - select: {selector: "#size", value: M}
      - check: "#terms"
      - hover: ".menu"
      - wait_for: {selector: ".loaded", state: attached, timeout_ms: 2000}
      - expect_text: {selector: h1, text: Cart}
      - expect_visible: ".total"
      - expect_url: /cart
      - screenshot: {name: cart, full_page: true, mask: [".ad"]}
  - name: account
    signed_in: true
    viewports: [mobile]
    steps:
      - goto: /account
      - screenshot: account
"""

SHOP_SPEC = Path(__file__).resolve().parents[2] / "examples" / "shop" / ".diffie.yml"


def test_every_step_form_parses() -> None:
    spec = parse_spec(GOOD)
    steps = spec.flows[0].steps
    assert [s.action for s in steps] == [
        "goto", "click", "fill", "press", "select", "check", "hover", "wait_for",
        "expect_text", "expect_visible", "expect_url", "screenshot"]
    assert steps[0].url == "/products"
    assert steps[1].selector == "#add"
    assert (steps[2].selector, steps[2].value) == ("#email", "ada@example.com")
    assert steps[3].key == "Enter"
    assert (steps[7].state, steps[7].timeout_ms) == ("attached", 2000)
    shot = steps[11]
    assert (shot.name, shot.full_page, shot.mask) == ("cart", True, [".ad"])
    assert steps[0].line == 9 and steps[11].line == 20          # lines of the YAML file
    assert spec.timeout_ms == 4000 and spec.masks == [".clock"]


def test_default_viewports_are_desktop_and_mobile() -> None:
    spec = parse_spec(GOOD)
    assert set(spec.viewports) == set(DEFAULT_VIEWPORTS) == {"desktop", "mobile"}
    assert [n for n, _ in spec.flow_viewports(spec.flows[0])] == ["desktop", "mobile"]
    assert [n for n, _ in spec.flow_viewports(spec.flows[1])] == ["mobile"]
    assert spec.viewports["mobile"].mobile is True


def test_the_sample_app_spec_is_valid() -> None:
    spec = load_spec(SHOP_SPEC)
    assert len(spec.flows) >= 3
    assert any(f.signed_in for f in spec.flows)
    assert spec.sandbox is not None


@pytest.mark.parametrize(("text", "line", "field", "words"), [
    ("flows:\n  - name: a\n    steps:\n      - clik: '#x'\n", 4, "flows[0].steps[0]",
     "exactly one action key"),
    ("flows:\n  - name: a\n    steps:\n      - goto: /\n      - click: {timeout_ms: 5}\n", 5,
     "flows[0].steps[1]", "needs a selector"),
    ("flows:\n  - name: a\n    colour: red\n    steps:\n      - goto: /\n", 3,
     "flows[0].colour", "unknown field 'colour'"),
    ("flows:\n  - name: a\n    steps:\n      - goto: /\n  - name: a\n    steps:\n"
     "      - goto: /\n", None, None, "duplicate flow names"),
    ("flows:\n  - name: a\n    viewports: [tablet]\n    steps:\n      - goto: /\n", None, None,
     "uses viewport 'tablet'"),
    ("flows:\n  - name: a\n    signed_in: true\n    steps:\n      - goto: /\n", None, None,
     "session_cookies is empty"),
    ("timeout_ms: -1\nflows:\n  - name: a\n    steps:\n      - goto: /\n", 1, "timeout_ms",
     "greater than 0"),
    ("flows:\n  - name: a\n    steps: []\n", 3, "flows[0].steps", "at least 1"),
    ("viewports:\n  desktop: {width: 0, height: 10}\nflows:\n  - name: a\n    steps:\n"
     "      - goto: /\n", 2, "viewports.desktop.width", "greater than 0"),
])
def test_errors_name_line_and_field(text: str, line: int | None, field: str | None,
                                    words: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text, file="app/.diffie.yml")
    err = info.value
    assert err.file == "app/.diffie.yml"
    if line is not None:
        assert err.line == line, str(err)
        assert f"app/.diffie.yml:{line}" in str(err)
    if field is not None:
        assert err.field == field and f"({field})" in str(err)
    assert words in str(err)


def test_yaml_syntax_error_has_a_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec("flows:\n  - name: a\n    steps: [goto: /\n")
    assert info.value.line is not None and "not valid YAML" in str(info.value)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "flows: 3\n"])
def test_empty_or_wrong_shape(text: str) -> None:
    with pytest.raises(SpecError):
        parse_spec(text)


def test_load_spec_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yml")
    assert "cannot read the spec" in str(info.value)
    assert str(tmp_path / "nope.yml") in str(info.value)
