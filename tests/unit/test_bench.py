"""``diffie bench corpus``: scoring against the manifest, the summary, the table and the CLI
(no VM: the runs are faked)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks import corpus as bench
from benchmarks.corpus import FoundItem, RunResult, plan, render_table, score_run, summarise
from diffie.cli import main, parser
from examples.corpus import CHANGES_DIR, ChangeCase, load_manifest


def case(id: str, category: str = "regression", expected: str = "fail",
         kinds: list[str] | None = None, **kw: Any) -> ChangeCase:
    return ChangeCase.model_validate({"id": id, "patch": f"{id}.patch", "category": category,
                                      "expected": expected, "kinds": kinds or [],
                                      "description": "d", **kw})


def run(change: str, got: str, *findings: FoundItem, repeat: int = 1,
        seconds: float = 10.0) -> RunResult:
    return RunResult(change=change, repeat=repeat, got=got, findings=tuple(findings),
                     seconds=seconds)


CONSOLE = FoundItem("console_error", "product", "desktop")
PAGE = FoundItem("page_error", "product", "desktop")
VISUAL_HOME_MOBILE = FoundItem("visual_change", "home", "mobile")
VISUAL_HOME_DESKTOP = FoundItem("visual_change", "home", "desktop")


def test_a_regression_with_the_status_and_every_kind_is_caught() -> None:
    c = case("console-error-cart", kinds=["console_error"], flows=["product"])
    assert score_run(c, run(c.id, "fail", CONSOLE, PAGE)).outcome == "caught"   # extra kinds ok


def test_a_missing_required_kind_or_another_status_is_a_wrong_kind() -> None:
    c = case("button-removed", kinds=["step_failed", "page_error"])
    s = score_run(c, run(c.id, "fail", PAGE))
    assert (s.outcome, s.missing_kinds) == ("wrong_kind", ("step_failed",))
    v = case("layout", expected="changed", kinds=["visual_change"])
    assert score_run(v, run(v.id, "fail", VISUAL_HOME_DESKTOP, CONSOLE)).outcome == "wrong_kind"


def test_a_passing_regression_is_missed_and_an_error_is_an_error() -> None:
    c = case("x", kinds=["console_error"])
    assert score_run(c, run("x", "pass")).outcome == "missed"
    assert score_run(c, run("x", "error")).outcome == "error"


def test_pre_existing_findings_do_not_satisfy_a_required_kind() -> None:
    c = case("x", kinds=["console_error"])
    old = FoundItem("console_error", "product", "desktop", pre_existing=True)
    assert score_run(c, run("x", "fail", old, PAGE)).outcome == "wrong_kind"


def test_findings_outside_the_allowed_flows_and_viewports_are_false() -> None:
    c = case("mobile", expected="changed", kinds=["visual_change"], viewports=["mobile"])
    s = score_run(c, run("mobile", "changed", VISUAL_HOME_MOBILE, VISUAL_HOME_DESKTOP))
    assert (s.outcome, s.false_findings) == ("caught", 1)
    f = case("cart", kinds=["console_error"], flows=["product"])
    deploy = FoundItem("deploy_error")          # no flow at all: outside a flow restriction
    assert score_run(f, run("cart", "fail", CONSOLE, deploy)).false_findings == 1


def test_every_finding_on_a_pass_expected_change_is_false() -> None:
    c = case("noise-x", category="noise", expected="pass")
    assert score_run(c, run("noise-x", "pass")).outcome == "pass"
    s = score_run(c, run("noise-x", "changed", VISUAL_HOME_DESKTOP, VISUAL_HOME_MOBILE))
    assert (s.outcome, s.false_findings) == ("false_finding", 2)
    assert score_run(c, run("noise-x", "error")).outcome == "error"


def test_summary_counts_and_the_machine_readable_last_line() -> None:
    cases = [case("a", kinds=["console_error"]), case("b", kinds=["page_error"]),
             case("c", expected="changed", kinds=["visual_change"]),
             case("n", category="noop", expected="pass")]
    results = [run("a", "fail", CONSOLE, seconds=61.4), run("b", "fail", CONSOLE),
               run("c", "pass"),
               run("n", "pass", repeat=1), run("n", "changed", VISUAL_HOME_DESKTOP, repeat=2),
               run("n", "pass", repeat=3)]
    s = summarise(cases, results)
    assert (s.regressions, s.caught, s.wrong_kind, s.missed) == (3, 1, 1, 1)
    assert (s.false_findings, s.false_runs, s.pass_runs, s.runs) == (1, 1, 3, 6)
    assert not s.ok
    assert s.last_line() == ("corpus: caught=1/3 wrong_kind=1 false_findings=1 runs=6 "
                             "seconds=111")
    assert any(p.startswith("n #2: 1 false finding(s): visual_change home@desktop")
               for p in s.problems)


def test_a_clean_corpus_is_ok_and_an_error_run_is_not() -> None:
    cases = [case("a", kinds=["console_error"]), case("n", category="noise", expected="pass")]
    assert summarise(cases, [run("a", "fail", CONSOLE), run("n", "pass")]).ok
    s = summarise(cases, [run("a", "fail", CONSOLE), run("n", "error")])
    assert s.errors == 1 and not s.ok


def test_plan_runs_regressions_once_and_noop_noise_repeats_times() -> None:
    cases = [case("a", kinds=["console_error"]), case("n", category="noop", expected="pass")]
    assert [(c.id, n) for c, n in plan(cases, repeats=3)] == [
        ("a", 1), ("n", 1), ("n", 2), ("n", 3)]
    three = [*cases, case("b", kinds=["page_error"])]
    assert [(c.id, n) for c, n in plan(three, repeats=2)] == [     # every change once first
        ("a", 1), ("n", 1), ("b", 1), ("n", 2)]
    assert [(c.id, n) for c, n in plan(cases, repeats=2, only=["n"])] == [("n", 1), ("n", 2)]
    with pytest.raises(ValueError, match="nope"):
        plan(cases, repeats=1, only=["nope"])


def test_the_shop_corpus_plan_is_about_45_runs() -> None:
    cases = load_manifest(CHANGES_DIR)
    todo = plan(cases, repeats=3)
    regressions = sum(1 for c in cases if c.is_regression)
    assert len(todo) == regressions + 3 * (len(cases) - regressions)


def test_table_has_the_columns_and_one_row_per_run() -> None:
    cases = [case("a", kinds=["console_error"]), case("n", category="noop", expected="pass")]
    text = render_table(cases, [run("a", "fail", CONSOLE, PAGE, seconds=72),
                                run("n", "pass", repeat=2, seconds=65)])
    lines = text.splitlines()
    assert lines[0].split() == ["change", "expected", "got", "findings", "seconds", "score"]
    assert "2: console_error, page_error" in lines[2] and "72" in lines[2]
    assert lines[3].startswith("n #2") and "caught" in lines[2] and "pass" in lines[3]


# --- the command line (runs faked) --------------------------------------------------------------

@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "r.patch").write_text("", encoding="utf-8")
    (folder / "n.patch").write_text("", encoding="utf-8")
    (folder / "manifest.yml").write_text(
        "version: 1\nchanges:\n"
        "  - {id: r, patch: r.patch, category: regression, expected: fail,"
        " kinds: [console_error], description: d}\n"
        "  - {id: n, patch: n.patch, category: noise, expected: pass, description: d}\n",
        encoding="utf-8")
    return folder


def corpus_cli(argv: list[str], run: bench.RunCorpus) -> int:
    """``diffie bench corpus ARGV`` with ``run`` verifying the planned runs."""
    args = parser().parse_args(["bench", "corpus", *argv])
    return int(bench.cmd_bench_corpus(args, run))


def fake_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, results: dict[str, RunResult],
              seen: list[tuple[str, int]]) -> bench.RunCorpus:
    monkeypatch.setenv("DIFFIE_DATA_DIR", str(tmp_path / "data"))

    def fake_run_corpus(ctx: Any, todo: list[tuple[ChangeCase, int]], *, app_dir: Path,
                        timeout_s: float, on_result: Any = None) -> list[RunResult]:
        out = []
        for c, n in todo:
            seen.append((c.id, n))
            r = RunResult(**{**results[c.id].__dict__, "repeat": n})
            out.append(r)
            on_result(c, r)
        return out

    return fake_run_corpus


def test_cli_prints_the_table_and_last_line_and_exits_0_when_clean(
        corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[str, int]] = []
    runner = fake_runs(monkeypatch, tmp_path, {"r": run("r", "fail", CONSOLE, seconds=50),
                                               "n": run("n", "pass", seconds=40)}, seen)
    out_json = tmp_path / "bench.json"
    code = corpus_cli(["--changes", str(corpus), "--repeats", "2", "--json-out", str(out_json)],
                      runner)
    out = capsys.readouterr()
    assert code == 0
    assert seen == [("r", 1), ("n", 1), ("n", 2)]
    assert "INCOMPLETE" not in out.out
    assert out.out.splitlines()[-1] == (
        "corpus: caught=1/1 wrong_kind=0 false_findings=0 runs=3 seconds=130")
    assert "change" in out.out.splitlines()[0]
    assert "[bench]" in out.err
    data = json.loads(out_json.read_text())
    assert data["last_line"] == out.out.splitlines()[-1] and len(data["runs"]) == 3


def test_cli_exits_1_on_a_false_finding_and_2_on_bad_input(
        corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    runner = fake_runs(monkeypatch, tmp_path, {"r": run("r", "fail", CONSOLE),
                                               "n": run("n", "changed", VISUAL_HOME_DESKTOP)}, [])
    assert corpus_cli(["--changes", str(corpus), "--only", "n", "--repeats", "1"], runner) == 1
    assert "false_findings=1 runs=1" in capsys.readouterr().out
    assert corpus_cli(["--changes", str(corpus), "--only", "zzz"], runner) == 2
    assert main(["bench", "corpus", "--changes", str(tmp_path / "nowhere")]) == 2


def test_an_interrupted_benchmark_reports_what_finished(
        corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DIFFIE_DATA_DIR", str(tmp_path / "data"))

    def interrupted(ctx: Any, todo: list[tuple[ChangeCase, int]], *, app_dir: Path,
                    timeout_s: float, on_result: Any = None) -> list[RunResult]:
        on_result(todo[0][0], run("r", "fail", CONSOLE, seconds=70))
        raise KeyboardInterrupt

    assert corpus_cli(["--changes", str(corpus)], interrupted) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("INCOMPLETE: 1 of 4 planned run(s)") for line in lines)
    assert lines[-1] == "corpus: caught=1/1 wrong_kind=0 false_findings=0 runs=1 seconds=70"


def test_concurrency_reaches_the_runner_and_throughput_is_printed(
        corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DIFFIE_DATA_DIR", str(tmp_path / "data"))
    asked: list[int] = []

    def two_at_once(ctx: Any, todo: list[tuple[ChangeCase, int]], *, app_dir: Path,
                    timeout_s: float, on_result: Any = None,
                    concurrency: int = 1) -> list[RunResult]:
        asked.append(concurrency)
        out = [run(c.id, "fail" if c.is_regression else "pass",
                   *([CONSOLE] if c.is_regression else []), seconds=60) for c, _ in todo]
        for (c, _), r in zip(todo, out, strict=True):
            on_result(c, r)
        return out

    assert corpus_cli(["--changes", str(corpus), "--repeats", "1", "--concurrency", "2"],
                      two_at_once) == 0
    assert asked == [2]
    lines = capsys.readouterr().out.splitlines()
    [throughput] = [line for line in lines if line.startswith("throughput: ")]
    assert re.fullmatch(r"throughput: concurrency=2 runs=2 wall_s=\d+ changes_per_hour=[\d.]+",
                        throughput), throughput
    assert lines[-1].startswith("corpus: caught=1/1")


def test_throughput_is_runs_per_hour_of_wall_time() -> None:
    assert bench.throughput_line(35, 1800.0, 2) == \
        "throughput: concurrency=2 runs=35 wall_s=1800 changes_per_hour=70.0"


def test_explanations_are_scored_against_the_manifests_expected_cause() -> None:
    shift = case("shift", expected="changed", kinds=["visual_change"],
                 expect_cause=["div.banner", "padding"])
    recolour = case("recolour", expected="changed", kinds=["visual_change"],
                    expect_cause=["color"])
    named = FoundItem("visual_change", "home", "desktop",
                      cause="body > div.banner padding 6px 16px → 10px 16px; 9 moved down 8 px")
    vague = FoundItem("visual_change", "home", "desktop", cause="body > main moved down 8 px")
    s = summarise([shift, recolour], [run("shift", "changed", vague, named),
                                      run("recolour", "changed", VISUAL_HOME_DESKTOP)])
    assert (s.explained, s.to_explain) == (1, 2)
    assert "explain: named=1/2" in bench.render_summary(s).splitlines()
    assert any(p.startswith("recolour: cause not named (want color): no explanation")
               for p in s.problems)
    manifest = {c.id: c for c in load_manifest(CHANGES_DIR)}
    assert all(c.expect_cause for c in manifest.values() if c.expected == "changed")
