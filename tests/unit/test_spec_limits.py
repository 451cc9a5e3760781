"""Limits on a .diffie.yml: YAML anchors/aliases refused, each cap a setting named in the error."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from diffie import yamlsafe
from diffie.config import Settings
from diffie.errors import SandboxError, SpecError
from diffie.sandbox.recipe import parse_recipe
from diffie.spec import load_spec, parse_spec, ready_path_problem
from diffie.spec_limits import SpecLimits
from examples.corpus import ManifestError, load_manifest

REPO = Path(__file__).resolve().parents[2]


def alias_bomb(levels: int = 9) -> str:
    """The classic "billion laughs": each level nine references to the previous one."""
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for name in "bcdefghijklmnop"[:levels - 1]:
        text += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    return text + f"flows: *{prev}\n"


def flows(n: int, steps: str = "      - goto: /\n") -> str:
    return "flows:\n" + "".join(f"  - name: f{i}\n    steps:\n{steps}" for i in range(n))


def error_of(text: str, limits: SpecLimits | None = None) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(text, limits=limits)
    return info.value


# --- YAML --------------------------------------------------------------------------------------

def test_alias_bomb_is_refused_at_once_naming_the_line() -> None:
    t0 = time.monotonic()
    err = error_of(alias_bomb())
    assert time.monotonic() - t0 < 0.5
    assert err.line == 1
    assert "anchors" in str(err) and str(err).startswith(".diffie.yml:1")


def test_a_lone_alias_and_a_merge_key_are_refused() -> None:
    text = "x: &base {timeout_ms: 10}\nflows: []\n"
    assert "anchors (&base)" in str(error_of(text))
    with pytest.raises(yamlsafe.Refused, match=r"aliases \(\*x\)") as info:
        yamlsafe.compose("a: 1\nb: *x\n")
    assert info.value.problem_mark is not None and info.value.problem_mark.line == 1


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    err = error_of("flows: " + "[" * 200 + "]" * 200)
    assert "nested more than 64 levels" in str(err) and err.line == 1
    assert "not valid YAML" in str(error_of("flows: " + "[" * 50_000 + "]" * 50_000))


def test_plain_yaml_still_loads_with_its_lines() -> None:
    node, data = yamlsafe.load("a: [1, {b: 2}]\nc: x\n")
    assert data == {"a": [1, {"b": 2}], "c": "x"}
    assert node is not None and node.start_mark.line == 0
    assert yamlsafe.load("") == (None, None)


def test_recipe_and_manifest_loaders_refuse_aliases(tmp_path: Path) -> None:
    # the same words as a spec's (one loader): refused, not "invalid YAML"
    with pytest.raises(SandboxError, match=r"recipe.yml:1: YAML anchors \(&a\) are not allowed"):
        parse_recipe(alias_bomb())
    (tmp_path / "manifest.yml").write_text(alias_bomb().replace("flows:", "changes:"))
    with pytest.raises(ManifestError, match=r"YAML anchors \(&a\) are not allowed") as info:
        load_manifest(tmp_path)
    assert info.value.line == 1


# --- caps --------------------------------------------------------------------------------------

def test_the_shop_spec_is_within_the_default_limits() -> None:
    spec = load_spec(REPO / "examples" / "shop" / ".diffie.yml")
    assert len(spec.flows) == 4


def test_too_many_flows_names_the_limit_and_the_setting() -> None:
    err = error_of(flows(51))
    assert err.field == "flows" and err.line == 1
    assert "51 flows, more than the limit of 50 (DIFFIE_MAX_FLOWS)" in str(err)
    parse_spec(flows(50))


def test_limits_come_from_the_settings() -> None:
    limits = SpecLimits.from_settings(Settings(max_flows=2, max_step_timeout_ms=1000))
    assert limits.max_flows == 2 and limits.max_step_timeout_ms == 1000
    assert "3 flows, more than the limit of 2" in str(error_of(flows(3), limits))
    parse_spec(flows(2), limits=limits)


def test_too_many_steps_points_at_the_flow() -> None:
    err = error_of("\n" + flows(1, "      - goto: /\n" * 101))
    assert err.field == "flows[0].steps" and err.line == 4
    assert "DIFFIE_MAX_STEPS_PER_FLOW" in str(err) and "101 steps" in str(err)


def test_too_many_viewports() -> None:
    vps = "".join(f"  v{i}: {{width: 100, height: 100}}\n" for i in range(9))
    err = error_of("viewports:\n" + vps + flows(1))
    assert err.field == "viewports" and "DIFFIE_MAX_VIEWPORTS" in str(err)


def test_a_viewport_larger_than_the_screenshot_area() -> None:
    err = error_of("viewports:\n  huge: {width: 7680, height: 4320}\n" + flows(1))
    assert err.field == "viewports.huge" and err.line == 2
    assert "DIFFIE_MAX_SCREENSHOT_PIXELS" in str(err)


def test_too_many_screenshots_counts_viewports() -> None:
    shots = "".join(f"      - screenshot: s{i}\n" for i in range(60))
    err = error_of(flows(2, shots))          # 2 flows x 60 shots x 2 default viewports
    assert "DIFFIE_MAX_SCREENSHOTS" in str(err) and err.field == "flows[1]"


def test_step_timeouts_above_the_cap() -> None:
    err = error_of("timeout_ms: 600000\n" + flows(1))
    assert err.field == "timeout_ms" and err.line == 1
    assert "600000 ms, more than the limit of 120000 ms (DIFFIE_MAX_STEP_TIMEOUT_MS)" in str(err)
    err = error_of(flows(1, "      - goto: /\n      - click: {selector: a}\n"
                            "        timeout_ms: 300000\n"))
    assert err.field == "flows[0].steps[1].timeout_ms" and err.line == 5


def test_the_worst_case_browse_time_is_capped() -> None:
    steps = "".join("      - click: {selector: a, timeout_ms: 100000}\n" for _ in range(10))
    err = error_of(flows(1, steps))          # 10 x 100 s x 2 viewports = 2000 s > 1800 s
    assert "2000 s" in str(err) and "DIFFIE_MAX_BROWSE_TIME_S" in str(err)


SANDBOX = "sandbox:\n  image: shop\n"


def test_deploy_commands_and_timeouts() -> None:
    cmds = "  deploy:\n" + "".join(f"    - echo {i}\n" for i in range(31))
    err = error_of(flows(1) + SANDBOX + cmds)
    assert err.field == "sandbox.deploy" and "DIFFIE_MAX_DEPLOY_COMMANDS" in str(err)
    err = error_of(flows(1) + SANDBOX + "  deploy_timeout_s: 3600\n")
    assert err.field == "sandbox.deploy_timeout_s" and "DIFFIE_MAX_DEPLOY_TIMEOUT_S" in str(err)
    err = error_of(flows(1) + SANDBOX + "  ready_timeout_s: 900\n")
    assert err.field == "sandbox.ready_timeout_s" and "DIFFIE_MAX_READY_TIMEOUT_S" in str(err)
    assert err.line == 7


def test_a_spec_larger_than_the_byte_limit(tmp_path: Path) -> None:
    text = flows(1) + "#" * 300_000 + "\n"
    err = error_of(text)
    assert "DIFFIE_MAX_SPEC_BYTES" in str(err)
    path = tmp_path / ".diffie.yml"
    path.write_text(text)
    with pytest.raises(SpecError, match="DIFFIE_MAX_SPEC_BYTES"):
        load_spec(path)
    path.write_bytes(b"flows: \xff\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(path)


# --- ready_path --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "@127.0.0.1:6379/x", "//127.0.0.1:6379/x", "http://127.0.0.1/x", "health", "/a@b",
    "/\\evil", "/a\nb", "/a b", "/a\x00", "/x?u=http://h/", ""])
def test_ready_path_must_be_a_path(path: str) -> None:
    assert ready_path_problem(path)
    err = error_of(flows(1) + SANDBOX + f"  ready_path: {path!r}\n".replace("\\\\", "\\"))
    assert err.field == "sandbox.ready_path"


@pytest.mark.parametrize("path", ["/", "/health", "/ready?deep=1", "/a/b-c_d.e~f"])
def test_plain_ready_paths_are_accepted(path: str) -> None:
    assert ready_path_problem(path) is None
    spec = parse_spec(flows(1) + SANDBOX + f"  ready_path: {path!r}\n")
    assert spec.sandbox is not None and spec.sandbox.ready_path == path


def test_a_recipe_http_probe_is_a_path_too() -> None:
    recipe = "ready:\n  command: 'true'\n  http: {port: 8000, path: '//127.0.0.1:6379/'}\n"
    with pytest.raises(SandboxError, match=r"recipe.yml:3 \(ready.http.path\): path must not "
                                           r"start with '//'"):
        parse_recipe(recipe)
