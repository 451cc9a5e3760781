"""Pixel diff: pixelmatch's own fixtures, byte for byte, and Diffie's region view on top."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from diffie.compare.pixeldiff import pixelmatch, pixelmatch_images
from diffie.compare.regions import DiffResult, RegionBox, compare_files, diff_regions
from diffie.errors import ImageError
from tests.paths import FIXTURES as SHARED_FIXTURES

FIXTURES = SHARED_FIXTURES / "pixelmatch"

JS_OPTIONS = {
    "threshold": "threshold",
    "includeAA": "include_aa",
    "alpha": "alpha",
    "aaColor": "aa_color",
    "diffColor": "diff_color",
    "diffColorAlt": "diff_color_alt",
    "diffMask": "diff_mask",
}


def _rows(table: str) -> list[tuple[str, str, str, dict[str, Any], int]]:
    path = FIXTURES / table
    if not path.exists():
        pytest.fail(f"pixelmatch fixtures not found at {FIXTURES} (vendored in "
                    "the repository: restore it with git checkout tests/fixtures)")
    rows = []
    for line in path.read_text().splitlines()[1:]:
        if not line.strip():
            continue
        a, b, diff, options, expected, *_ = line.split("\t")
        rows.append((a, b, diff, json.loads(options), int(expected)))
    return rows


def _load(name: str) -> np.ndarray:
    with Image.open(FIXTURES / name) as im:
        return np.asarray(im.convert("RGBA"))


def _options(js: dict[str, Any]) -> dict[str, Any]:
    opts = {}
    for key, value in js.items():
        opts[JS_OPTIONS[key]] = tuple(value) if isinstance(value, list) else value
    return opts


def _ids(rows: list[Any]) -> list[str]:
    return [f"{a}-{b}-{Path(d).name}" for a, b, d, _, _ in rows]


def _run_fixture(a: str, b: str, diff: str, js: dict[str, Any], expected: int, checkerboard: bool) -> None:
    img1, img2, want = _load(a), _load(b), _load(diff)
    out = np.zeros_like(img1)  # upstream's test starts from a zero-filled output
    opts = _options(js)
    assert pixelmatch(img1, img2, out, checkerboard=checkerboard, **opts) == expected
    assert pixelmatch(img1, img2, None, checkerboard=checkerboard, **opts) == expected
    mismatched = np.flatnonzero((out != want).any(axis=2))
    assert mismatched.size == 0, f"{mismatched.size} output pixels differ from {diff}"


V7_ROWS = _rows("EXPECTED.tsv") if (FIXTURES / "EXPECTED.tsv").exists() else []
V5_ROWS = _rows("v5.3.0/EXPECTED.tsv") if (FIXTURES / "v5.3.0/EXPECTED.tsv").exists() else []


def test_fixture_tables_are_complete() -> None:
    assert len(V7_ROWS) == 12
    assert len(V5_ROWS) == 10


@pytest.mark.parametrize(("a", "b", "diff", "js", "expected"), V7_ROWS, ids=_ids(V7_ROWS))
def test_pixelmatch_7_2_0_fixtures(a: str, b: str, diff: str, js: dict[str, Any], expected: int) -> None:
    _run_fixture(a, b, diff, js, expected, checkerboard=True)


@pytest.mark.parametrize(("a", "b", "diff", "js", "expected"), V5_ROWS, ids=_ids(V5_ROWS))
def test_pixelmatch_5_3_0_fixtures_in_legacy_mode(a: str, b: str, diff: str, js: dict[str, Any],
                                                  expected: int) -> None:
    _run_fixture(a, b, diff, js, expected, checkerboard=False)


def test_single_semi_transparent_pixel_as_upstream_7_2_0() -> None:
    img1 = np.array([[[0, 0, 0, 128]]], dtype=np.uint8)
    img2 = np.array([[[127, 127, 127, 255]]], dtype=np.uint8)
    assert pixelmatch(img1, img2, checkerboard=False) == 0
    assert pixelmatch(img1, img2) == 1


def test_brightness_keys_of_distinct_colours_never_collide() -> None:
    # The AA detector orders neighbours by an exact integer brightness key; this holds only
    # if no two RGB triples share a key, i.e. no small integer relation between the weights.
    d = np.arange(-255, 256, dtype=np.int64)
    partial = d[:, None] * 29889531 + d[None, :] * 58662247
    quotient, remainder = np.divmod(partial, 11448223)
    hits = (remainder == 0) & (np.abs(quotient) <= 255)
    hits[255, 255] = False  # dr = dg = db = 0
    assert not hits.any()


# --------------------------------------------------------------------------- API behaviour


def _flat(h: int, w: int, rgba: tuple[int, int, int, int] = (255, 255, 255, 255)) -> np.ndarray:
    img = np.empty((h, w, 4), dtype=np.uint8)
    img[...] = rgba
    return img


def test_identical_images_fast_path_draws_grey_copy_or_nothing_in_mask_mode() -> None:
    img = _flat(3, 4, (10, 20, 30, 255))
    out = np.full_like(img, 7)
    assert pixelmatch(img, img.copy(), out) == 0
    # 255 + (Y - 255) * 0.1, truncated: Y = 10*0.29889531 + 20*0.58662247 + 30*0.11448223
    y = 10 * 0.29889531 + 20 * 0.58662247 + 30 * 0.11448223
    grey = int(255 + (y - 255) * 0.1 * 255 / 255)
    assert (out[..., :3] == grey).all() and (out[..., 3] == 255).all()
    masked = np.full_like(img, 7)
    assert pixelmatch(img, img.copy(), masked, diff_mask=True) == 0
    assert (masked == 7).all()


def test_diff_mask_draws_only_differences_and_keeps_other_pixels() -> None:
    a = _flat(5, 5, (0, 0, 0, 255))
    b = a.copy()
    b[2, 2] = (255, 255, 255, 255)
    out = np.full_like(a, 9)
    assert pixelmatch(a, b, out, diff_mask=True) == 1
    assert tuple(out[2, 2]) == (255, 0, 0, 255)
    out[2, 2] = 9
    assert (out == 9).all()


def test_diff_color_alt_marks_pixels_that_got_darker() -> None:
    a = _flat(5, 5, (128, 128, 128, 255))
    b = a.copy()
    b[1, 1] = (0, 0, 0, 255)  # darker in img2
    b[3, 3] = (255, 255, 255, 255)  # lighter in img2
    out = np.zeros_like(a)
    assert pixelmatch(a, b, out, diff_color_alt=(0, 255, 0)) == 2
    assert tuple(out[1, 1]) == (0, 255, 0, 255)
    assert tuple(out[3, 3]) == (255, 0, 0, 255)


def test_non_contiguous_inputs_and_output_give_the_same_answer() -> None:
    a, b = _load("1a.png"), _load("1b.png")
    want = np.zeros_like(a)
    expected = pixelmatch(a, b, want, threshold=0.05)
    big_a = np.zeros((a.shape[0], a.shape[1] * 2, 4), dtype=np.uint8)
    big_b = big_a.copy()
    big_out = np.zeros_like(big_a)
    big_a[:, ::2], big_b[:, ::2] = a, b
    assert pixelmatch(big_a[:, ::2], big_b[:, ::2], big_out[:, ::2], threshold=0.05) == expected
    assert np.array_equal(big_out[:, ::2], want)


def test_colour_options_are_stored_like_a_uint8_array() -> None:
    a = _flat(3, 3, (0, 0, 0, 255))
    b = a.copy()
    b[1, 1] = (255, 255, 255, 255)
    out = np.zeros_like(a)
    pixelmatch(a, b, out, diff_color=(256.9, -1, 12.7))  # type: ignore[arg-type]
    assert tuple(out[1, 1]) == (0, 255, 12, 255)


@pytest.mark.parametrize(
    ("img1", "img2", "message"),
    [
        (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 5, 4), np.uint8),
         "sizes do not match: img1 is 4x4, img2 is 5x4"),
        (np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), "dtype uint8"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8), "(height, width, 4)"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), "(height, width, 4)"),
        ([[0]], np.zeros((4, 4, 4), np.uint8), "numpy.ndarray"),
    ],
)
def test_bad_input_raises_a_clear_image_error(img1: object, img2: object, message: str) -> None:
    with pytest.raises(ImageError, match=None) as info:
        pixelmatch(img1, img2)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_bad_output_raises_image_error() -> None:
    a = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ImageError, match="output has shape"):
        pixelmatch(a, a, np.zeros((4, 5, 4), np.uint8))
    readonly = np.zeros((4, 4, 4), np.uint8)
    readonly.flags.writeable = False
    with pytest.raises(ImageError, match="read-only"):
        pixelmatch(a, a, readonly)


def test_pixelmatch_images_accepts_pillow_images_of_any_mode() -> None:
    with Image.open(FIXTURES / "4a.png") as a, Image.open(FIXTURES / "4b.png") as b:
        assert a.mode == "RGB"
        count, diff = pixelmatch_images(a, b, threshold=0.05)
    assert count == 36049
    assert diff.mode == "RGBA" and diff.size == (438, 412)
    assert np.array_equal(np.asarray(diff), _load("4diff.png"))


# --------------------------------------------------------------------------- diff_regions


def _with_squares(base: np.ndarray, squares: list[tuple[int, int, int]]) -> np.ndarray:
    img = base.copy()
    for x, y, size in squares:
        img[y : y + size, x : x + size] = (0, 0, 0, 255)
    return img


def test_regions_are_bounding_boxes_of_clusters_sorted_by_size() -> None:
    a = _flat(100, 200)
    b = _with_squares(a, [(10, 10, 5), (150, 60, 10)])
    result = diff_regions(a, b)
    assert isinstance(result, DiffResult)
    assert result.changed_pixels == 25 + 100
    assert result.total_pixels == 200 * 100
    assert result.ratio == pytest.approx(125 / 20000)
    assert result.regions == [RegionBox(150, 60, 10, 10, 100), RegionBox(10, 10, 5, 5, 25)]
    assert not result.size_changed and result.size_a == result.size_b == (200, 100)
    assert result.ignored_pixels == 0
    assert result.diff is not None and result.diff.shape == (100, 200, 4)
    assert tuple(result.diff[12, 12]) == (255, 0, 0, 255)


def test_nearby_changes_merge_into_one_region_and_far_ones_do_not() -> None:
    a = _flat(60, 60)
    b = _with_squares(a, [(10, 10, 3), (16, 10, 3)])  # 3 px apart
    merged = diff_regions(a, b, merge_distance=8)
    assert merged.regions == [RegionBox(10, 10, 9, 3, 18)]
    apart = diff_regions(a, b, merge_distance=0)
    assert sorted((r.x, r.width) for r in apart.regions) == [(10, 3), (16, 3)]


def test_ignore_rectangles_are_not_counted_but_still_drawn() -> None:
    a = _flat(50, 100)
    b = _with_squares(a, [(5, 5, 4), (60, 20, 10)])
    result = diff_regions(a, b, ignore=[(55, 15, 30, 30)])
    assert result.changed_pixels == 16
    assert result.ignored_pixels == 100
    assert result.regions == [RegionBox(5, 5, 4, 4, 16)]
    assert result.diff is not None
    assert tuple(result.diff[25, 65]) == (255, 0, 0, 255)  # ignored, yet visible


def test_ignore_rectangles_outside_the_image_are_harmless() -> None:
    a = _flat(10, 10)
    b = _with_squares(a, [(2, 2, 2)])
    result = diff_regions(a, b, ignore=[(50, 50, 10, 10), (-5, -5, 6, 6)])
    assert result.changed_pixels == 4
    with pytest.raises(ImageError, match="negative size"):
        diff_regions(a, b, ignore=[(0, 0, -1, 3)])


def test_different_sizes_compare_the_common_area_and_flag_the_change() -> None:
    a = _flat(80, 120)
    taller = np.concatenate([_with_squares(a, [(30, 30, 4)]), _flat(40, 120, (0, 0, 0, 255))])
    result = diff_regions(a, taller)
    assert result.size_changed
    assert result.size_a == (120, 80) and result.size_b == (120, 120)
    assert result.total_pixels == 120 * 80
    assert result.changed_pixels == 16
    assert result.regions == [RegionBox(30, 30, 4, 4, 16)]
    assert result.diff is not None and result.diff.shape == (80, 120, 4)
    narrower = diff_regions(taller[:, :50], a)
    assert narrower.size_changed and narrower.total_pixels == 50 * 80


def test_images_without_a_common_area_do_not_crash() -> None:
    result = diff_regions(_flat(10, 10), np.zeros((0, 10, 4), np.uint8))
    assert result.size_changed and result.total_pixels == 0 and result.ratio == 0.0
    assert result.regions == []


def test_identical_screenshots_have_no_regions_and_no_image_when_not_wanted() -> None:
    a = _load("6a.png")
    result = diff_regions(a, a.copy(), with_diff_image=False)
    assert result.changed_pixels == 0 and result.regions == [] and result.diff is None


def test_regions_agree_with_pixelmatch_on_fixtures() -> None:
    a, b = _load("1a.png"), _load("1b.png")
    result = diff_regions(a, b, threshold=0.05)
    assert result.changed_pixels == 143
    assert sum(r.pixels for r in result.regions) == 143
    assert result.diff is not None and np.array_equal(result.diff, _load("1diff.png"))
    mask = (result.diff[..., :3] == (255, 0, 0)).all(axis=2)
    ys, xs = np.nonzero(mask)
    for y, x in zip(ys, xs, strict=True):
        assert any(r.x <= x < r.x + r.width and r.y <= y < r.y + r.height for r in result.regions)


def test_compare_files_reads_any_pillow_format(tmp_path: Path) -> None:
    a = _flat(20, 30, (200, 10, 10, 255))
    b = _with_squares(a, [(3, 4, 5)])
    Image.fromarray(a[..., :3], "RGB").save(tmp_path / "a.png")
    Image.fromarray(b, "RGBA").save(tmp_path / "b.png")
    result = compare_files(tmp_path / "a.png", tmp_path / "b.png")
    assert result.changed_pixels == 25
    assert result.regions == [RegionBox(3, 4, 5, 5, 25)]


def test_compare_files_turns_unreadable_files_into_image_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="cannot read image"):
        compare_files(tmp_path / "junk.png", tmp_path / "junk.png")
    with pytest.raises(ImageError, match="cannot read image"):
        compare_files(tmp_path / "missing.png", tmp_path / "junk.png")
