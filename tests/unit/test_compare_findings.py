"""compare_runs: pairing by flow×viewport, stable ids, logs and visual together."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from diffie.artifacts import ArtifactDir
from diffie.capture import Box, Capture, ConsoleEntry, Screenshot, StepResult
from diffie.compare.findings import compare_runs, needs_second_render, noise_floor_pairs
from diffie.verdict import judge


def shot(out: ArtifactDir, name: str, colour: str) -> Screenshot:
    Image.new("RGBA", (40, 30), colour).save(out.path(name))
    return Screenshot(name="page", step=1, artifact=name, width=40, height=30)


def cap(side: str, flow: str, viewport: str, port: int, *, errors=(), screenshots=()) -> Capture:
    return Capture(
        flow=flow, viewport=viewport, side=side,  # type: ignore[arg-type]
        steps=[StepResult(index=0, action="goto", description="goto /", ok=True),
               StepResult(index=1, action="screenshot", description="screenshot page", ok=True)],
        console=[ConsoleEntry(type="error", text=f"{e} (http://127.0.0.1:{port}/app.js:1:{port})")
                 for e in errors],
        screenshots=list(screenshots))


def test_pairs_by_flow_and_viewport_and_ids_are_stable_across_hosts(tmp_path: Path):
    out = ArtifactDir(tmp_path).ensure()
    base = [cap("base", "home", "desktop", 8001, errors=["old"], screenshots=[shot(out, "b1.png", "white")]),
            cap("base", "home", "mobile", 8001, screenshots=[shot(out, "b2.png", "white")])]
    head = [cap("head", "home", "mobile", 9001, errors=["new"], screenshots=[shot(out, "h2.png", "red")]),
            cap("head", "home", "desktop", 9001, errors=["old"], screenshots=[shot(out, "h1.png", "white")])]
    findings, flaky = compare_runs(base, head, out)
    assert flaky == []
    assert [(f.kind, f.flow, f.viewport) for f in findings] == [
        ("console_error", "home", "mobile"), ("visual_change", "home", "mobile")]
    assert len({f.id for f in findings}) == 2 and all(f.id for f in findings)

    head_other_port = [cap("head", "home", "mobile", 7777, errors=["new"],
                           screenshots=[shot(out, "h3.png", "red")])]
    again, _ = compare_runs(base, head_other_port, out)
    assert [f.id for f in again] == [f.id for f in findings]
    assert judge("r", findings).status == "fail"
    assert judge("r", findings[1:]).status == "changed"


def test_head_flow_without_base_is_compared_against_nothing(tmp_path: Path):
    out = ArtifactDir(tmp_path).ensure()
    findings, _ = compare_runs([], [cap("head", "new-flow", "desktop", 9001, errors=["boom"])], out)
    assert [f.kind for f in findings] == ["console_error"]


def signin(side: str, *, click_ok: bool) -> Capture:
    return Capture(
        flow="signin", viewport="mobile", side=side,  # type: ignore[arg-type]
        completed=click_ok,
        steps=[StepResult(index=0, action="goto", description="goto /signin", ok=True),
               StepResult(index=1, action="click", description="click #submit", ok=click_ok,
                          error=None if click_ok else "selector '#submit' did not appear"),
               *([StepResult(index=2, action="expect_text", description="expect h1", ok=True)]
                 if click_ok else [])])


def test_a_step_that_head_second_render_passes_is_flaky_not_a_finding(tmp_path: Path):
    """A guest too slow once (or a race in the test) fails a step on one render; a change that
    breaks the step breaks it on both renders of head."""
    out = ArtifactDir(tmp_path).ensure()
    base = [signin("base", click_ok=True)]
    findings, flaky = compare_runs(base, [signin("head", click_ok=False)], out,
                                   head2=[signin("head2", click_ok=True)])
    assert findings == []
    [fl] = flaky
    assert (fl.flow, fl.viewport, fl.step) == ("signin", "mobile", 1)
    assert fl.reason and "did not appear" in fl.reason
    assert judge("r", findings, flaky=flaky).status == "pass"
    # failing on both renders of head: the change broke it
    findings, flaky = compare_runs(base, [signin("head", click_ok=False)], out,
                                   head2=[signin("head2", click_ok=False)])
    assert [(f.kind, f.step) for f in findings] == [("step_failed", 1)] and flaky == []
    # without a second render there is nothing to tell noise by: it is a finding
    findings, _ = compare_runs(base, [signin("head", click_ok=False)], out)
    assert [f.kind for f in findings] == ["step_failed"]


def test_a_second_render_is_needed_only_where_it_can_change_the_findings(tmp_path: Path):
    out = ArtifactDir(tmp_path).ensure()
    base = cap("base", "home", "desktop", 8001, screenshots=[shot(out, "b.png", "white")])
    same = cap("head", "home", "desktop", 9001, screenshots=[shot(out, "h.png", "white")])
    red = cap("head", "home", "desktop", 9001, screenshots=[shot(out, "r.png", "red")])
    assert not needs_second_render(base, same, out)
    assert needs_second_render(base, red, out)
    assert needs_second_render(base, signin("head", click_ok=False), out)   # a step failed
    assert not needs_second_render(None, same, out)
    # a difference only under a mask box counts as none
    masked = Image.new("RGBA", (40, 30), "white")
    masked.paste((255, 0, 0, 255), (5, 5, 15, 15))
    masked.save(out.path("m.png"))
    under_mask = cap("head", "home", "desktop", 9001, screenshots=[Screenshot(
        name="page", step=1, artifact="m.png", width=40, height=30,
        mask_boxes=[Box(x=0, y=0, width=20, height=20)])])
    assert not needs_second_render(base, under_mask, out)
    # another page size: needed
    Image.new("RGBA", (40, 60), "white").save(out.path("tall.png"))
    tall = cap("head", "home", "desktop", 9001, screenshots=[Screenshot(
        name="page", step=1, artifact="tall.png", width=40, height=60)])
    assert needs_second_render(base, tall, out)
    assert noise_floor_pairs([base], [same, red], out) == {("home", "desktop")}


def test_without_a_difference_from_base_the_second_render_changes_no_finding(tmp_path: Path):
    """Skipping head2 where head matches base is safe: whatever head2 shows (here: noise all
    over the page), the findings of such a pair are the same with and without it."""
    out = ArtifactDir(tmp_path).ensure()
    base = [cap("base", "home", "desktop", 8001, screenshots=[shot(out, "b.png", "white")])]
    head = [cap("head", "home", "desktop", 9001, errors=["new"],
                screenshots=[shot(out, "h.png", "white")])]
    noisy = [cap("head2", "home", "desktop", 9001, screenshots=[shot(out, "n.png", "blue")])]
    assert noise_floor_pairs(base, head, out) == set()
    without, _ = compare_runs(base, head, out)
    with_noise, flaky = compare_runs(base, head, out, head2=noisy)
    assert [(f.id, f.kind, f.message) for f in without] == \
        [(f.id, f.kind, f.message) for f in with_noise]
    assert [f.kind for f in without] == ["console_error"]
    assert flaky and flaky[0].screenshot == "page"        # head2 would only have added this
