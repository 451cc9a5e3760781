"""Visual findings from real PNGs: regions named by DOM elements, masks, size changes and the
noise floor (a second render of head)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from diffie.artifacts import ArtifactDir, slug
from diffie.capture import Box, Capture, Screenshot, StepResult
from diffie.compare.findings import compare_runs
from diffie.compare.visual import Element, elements_under
from diffie.errors import ImageError

W, H = 240, 160
STEPS = [StepResult(index=0, action="goto", description="goto /", ok=True),
         StepResult(index=1, action="screenshot", description="screenshot home", ok=True)]


def png(out: ArtifactDir, name: str, rects: list[tuple[tuple[int, int, int, int], str]],
        size: tuple[int, int] = (W, H)) -> str:
    im = Image.new("RGBA", size, "white")
    draw = ImageDraw.Draw(im)
    for (x, y, w, h), colour in rects:
        draw.rectangle((x, y, x + w - 1, y + h - 1), fill=colour)
    im.save(out.path(name))
    return name


def elements(out: ArtifactDir, name: str, items: list[dict[str, Any]]) -> str:
    out.path(name).write_text(json.dumps(items))
    return name


def capture(side: str, artifact: str | None, *, size=(W, H), masks=(), els: str | None = None,
            flow: str = "home") -> Capture:
    shots = [] if artifact is None else [Screenshot(
        name="home", step=1, artifact=artifact, width=size[0], height=size[1], elements=els,
        mask_boxes=[Box(x=x, y=y, width=w, height=h) for x, y, w, h in masks])]
    return Capture(flow=flow, viewport="desktop", side=side, steps=STEPS, screenshots=shots)  # type: ignore[arg-type]


@pytest.fixture
def out(tmp_path: Path) -> ArtifactDir:
    return ArtifactDir(tmp_path / "run").ensure()


BUTTON = {"selector": "#buy", "text": "Add to cart", "x": 60, "y": 40, "width": 50, "height": 20}
BODY = {"selector": "body", "text": "Shop", "x": 0, "y": 0, "width": W, "height": H}
HEADER = {"selector": "header", "text": "Shop", "x": 0, "y": 0, "width": W, "height": 30}


def test_identical_screenshots_give_nothing(out):
    png(out, "b.png", [((10, 10, 30, 30), "blue")])
    png(out, "h.png", [((10, 10, 30, 30), "blue")])
    findings, flaky = compare_runs([capture("base", "b.png")], [capture("head", "h.png")], out)
    assert findings == [] and flaky == []


def test_moved_button_names_the_element_and_writes_a_diff_image(out):
    png(out, "b.png", [((20, 40, 50, 20), "#0a0")])
    png(out, "h.png", [((60, 40, 50, 20), "#0a0")])
    base_els = elements(out, "b.json", [BODY, {**BUTTON, "x": 20}])
    head_els = elements(out, "h.json", [BODY, HEADER, BUTTON])
    findings, flaky = compare_runs([capture("base", "b.png", els=base_els)],
                                   [capture("head", "h.png", els=head_els)], out)
    [f] = findings
    assert flaky == []
    assert f.kind == "visual_change" and not f.is_error
    assert f.flow == "home" and f.viewport == "desktop" and f.step == 1
    assert f.step_description == "screenshot home"
    diff_name = slug("diff", "home", "desktop", "home") + ".png"
    assert f.evidence == [diff_name, "b.png", "h.png"]
    assert out.path(diff_name).is_file()
    with Image.open(out.path(diff_name)) as im:
        assert im.size == (W, H)
    assert f.details["changed_pixels"] == 2 * 40 * 20       # uncovered + newly covered strips
    assert f.details["ratio"] == pytest.approx(1600 / (W * H))
    assert sum(r.pixels for r in f.regions) == 1600
    selectors = {e["selector"] for r in f.regions for e in r.elements}
    assert "#buy" in selectors
    [buy] = [e for r in f.regions for e in r.elements if e["selector"] == "#buy"]
    assert buy["box"] == "60,40 50x20" and buy["base_box"] == "20,40 50x20"   # it moved
    assert '#buy "Add to cart" (was at 20,40 50x20)' in f.message and "1,600 pixels" in f.message
    assert f.id.startswith("f-")


def test_elements_under_prefers_smallest_enclosing_then_contained():
    els = [Element("body", "", 0, 0, 200, 200), Element("main", "", 0, 30, 200, 170),
           Element(".card", "Tea", 10, 40, 80, 60), Element(".price", "$3", 20, 80, 30, 10),
           Element("footer", "", 0, 190, 200, 10)]
    assert elements_under((22, 82, 10, 5), els)[0].selector == ".price"
    picks = elements_under((5, 35, 100, 80), els)
    assert picks[0].selector == ".card"            # mostly inside a region much smaller than main
    assert picks[1].selector == "main"             # the smallest element enclosing the region
    assert elements_under((15, 45, 60, 50), els)[0].selector == ".card"   # encloses, close in size
    assert "footer" not in [e.selector for e in picks]


def test_masked_area_is_ignored_unless_masks_count(out):
    png(out, "b.png", [((100, 100, 40, 20), "red")])
    png(out, "h.png", [((100, 100, 40, 20), "green")])
    base = capture("base", "b.png", masks=[(95, 95, 50, 30)])
    head = capture("head", "h.png", masks=[(95, 95, 50, 30)])
    assert compare_runs([base], [head], out) == ([], [])
    findings, _ = compare_runs([base], [head], out, masks_in_count=True)
    assert [f.kind for f in findings] == ["visual_change"]


def test_removed_element_is_named_from_the_base_map(out):
    png(out, "b.png", [((60, 40, 50, 20), "#0a0")])
    png(out, "h.png", [])
    base_els = elements(out, "b.json", [BODY, BUTTON])
    head_els = elements(out, "h.json", [BODY])
    [f] = compare_runs([capture("base", "b.png", els=base_els)],
                       [capture("head", "h.png", els=head_els)], out)[0]
    [region] = f.regions
    assert region.elements[0] == {"selector": "#buy", "text": "Add to cart", "box": "60,40 50x20",
                                  "side": "base"}
    assert region.elements[1]["selector"] == "body"
    assert '#buy "Add to cart" (on base)' in f.message


def test_size_change_also_compares_the_common_area(out):
    png(out, "b.png", [((10, 10, 20, 20), "blue")])
    png(out, "h.png", [((10, 10, 20, 20), "red"), ((0, H, W, 40), "black")], size=(W, H + 40))
    [f] = compare_runs([capture("base", "b.png")], [capture("head", "h.png", size=(W, H + 40))], out)[0]
    assert f.kind == "size_change"
    assert f.details["size_base"] == [W, H] and f.details["size_head"] == [W, H + 40]
    assert f.details["changed_pixels"] == 400
    assert f"{W}x{H} to {W}x{H + 40}" in f.message
    assert f.regions and f.regions[0].width == 20


def test_screenshot_on_one_side_only_gives_no_visual_finding(out):
    png(out, "h.png", [])
    assert compare_runs([capture("base", None)], [capture("head", "h.png")], out) == ([], [])
    png(out, "b.png", [])
    assert compare_runs([capture("base", "b.png")], [capture("head", None)], out) == ([], [])


def test_unreadable_screenshot_is_an_error_not_a_pass(out):
    png(out, "b.png", [])
    out.path("h.png").write_bytes(b"not a png")
    with pytest.raises(ImageError):
        compare_runs([capture("base", "b.png")], [capture("head", "h.png")], out)


CLOCK = (160, 5, 60, 14)          # a server-rendered time: differs on every render


def test_noise_floor_turns_render_to_render_differences_into_flaky_evidence(out):
    png(out, "b.png", [(CLOCK, "#333")])
    png(out, "h.png", [((CLOCK[0] + 4, 5, 50, 14), "#333")])
    png(out, "h2.png", [((CLOCK[0] + 2, 5, 56, 12), "#333")])
    base, head, head2 = capture("base", "b.png"), capture("head", "h.png"), capture("head2", "h2.png")
    # without the second render, the clock is a (false) finding
    assert [f.kind for f in compare_runs([base], [head], out)[0]] == ["visual_change"]
    findings, flaky = compare_runs([base], [head], out, head2=[head2])
    assert findings == []
    [fl] = flaky
    assert fl.flow == "home" and fl.viewport == "desktop" and fl.screenshot == "home" and fl.pixels > 0
    flaky_diff = slug("flaky", "home", "desktop", "home") + ".png"
    assert fl.evidence == [flaky_diff, "h.png", "h2.png"] and out.path(flaky_diff).is_file()


def test_noise_floor_keeps_real_changes_outside_flaky_regions(out):
    png(out, "b.png", [(CLOCK, "#333"), ((20, 60, 80, 40), "blue")])
    png(out, "h.png", [((CLOCK[0] + 4, 5, 50, 14), "#333"), ((20, 60, 80, 40), "orange")])
    png(out, "h2.png", [((CLOCK[0] + 2, 5, 56, 12), "#333"), ((20, 60, 80, 40), "orange")])
    findings, flaky = compare_runs([capture("base", "b.png")], [capture("head", "h.png")], out,
                                   head2=[capture("head2", "h2.png")])
    [f] = findings
    assert len(flaky) == 1
    assert f.details["changed_pixels"] == 80 * 40          # the clock is not counted
    assert f.details["noise_threshold"] == flaky[0].pixels
    assert [(r.x, r.y, r.width, r.height) for r in f.regions] == [(20, 60, 80, 40)]


def test_noise_floor_threshold_adapts_to_the_flaky_pixel_count(out):
    png(out, "b.png", [(CLOCK, "#333"), ((20, 60, 3, 3), "blue")])
    png(out, "h.png", [((CLOCK[0] + 4, 5, 50, 14), "#333"), ((20, 60, 3, 3), "orange")])
    png(out, "h2.png", [((CLOCK[0] + 2, 5, 56, 12), "#333"), ((20, 60, 3, 3), "orange")])
    findings, flaky = compare_runs([capture("base", "b.png")], [capture("head", "h.png")], out,
                                   head2=[capture("head2", "h2.png")])
    assert findings == [] and flaky[0].pixels > 9       # 9 px left <= the flaky count


def test_identical_renders_of_head_give_no_flaky_entry(out):
    png(out, "b.png", [])
    png(out, "h.png", [((20, 60, 80, 40), "orange")])
    png(out, "h2.png", [((20, 60, 80, 40), "orange")])
    findings, flaky = compare_runs([capture("base", "b.png")], [capture("head", "h.png")], out,
                                   head2=[capture("head2", "h2.png")])
    assert flaky == [] and [f.details["changed_pixels"] for f in findings] == [3200]
