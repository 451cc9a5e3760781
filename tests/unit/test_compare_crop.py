"""The picture of a visual finding an agent can ask for (diffie.compare.crop): base | head |
diff around the changed regions, scaled to fit, read only from the run's folder."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from diffie.compare.crop import GAP, MAX_SIDE, PAD, changed_area, finding_picture


def _shot(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, (255, 255, 255))
    img.paste(colour, (100, 50, 140, 70))
    img.save(path)
    return path.name


def test_the_picture_is_the_changed_area_of_base_head_and_diff(tmp_path: Path) -> None:
    run = tmp_path / "run"
    names = {k: _shot(run / f"{k}.png", (1280, 900), c)
             for k, c in (("base", (0, 0, 200)), ("head", (200, 0, 0)), ("diff", (255, 0, 255)))}
    finding = {"details": names,
               "regions": [{"x": 100, "y": 50, "width": 40, "height": 20, "pixels": 800}]}
    png = finding_picture(run, finding)
    assert png is not None
    with Image.open(io.BytesIO(png)) as img:
        crop_w, crop_h = 40 + 2 * PAD, 20 + 2 * PAD
        assert img.size == (3 * crop_w + 2 * GAP, crop_h)
        assert img.getpixel((PAD + 5, PAD + 5)) == (0, 0, 200)
        assert img.getpixel((crop_w + GAP + PAD + 5, PAD + 5)) == (200, 0, 0)
    whole = finding_picture(run, {"details": names, "regions": []})
    assert whole is not None
    with Image.open(io.BytesIO(whole)) as img:
        assert max(img.size) == MAX_SIDE


def test_names_outside_the_run_and_missing_files_give_no_picture(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _shot(tmp_path / "secret.png", (50, 50), (1, 2, 3))
    assert finding_picture(run, {"details": {"head": "../secret.png", "base": "/etc/passwd",
                                             "diff": "nope.png"}}) is None
    assert finding_picture(run, {}) is None
    assert changed_area([{"x": "1"}], (10, 10)) == (0, 0, 10, 10)
    assert changed_area([{"x": 0, "y": 0, "width": 5, "height": 5}], (10, 10)) == (0, 0, 10, 10)
