"""Property tests: the vectorised pixel diff against scalar pixelmatch implementations.

* Legacy mode (``checkerboard=False``) against the PyPI ``pixelmatch`` port (5.x semantics).
* Default mode against a line-by-line Python transcription of pixelmatch 7.x's index.js
  (Python floats are IEEE doubles like JS numbers, and the order of operations is kept).

Images are small and drawn from a few colours, and the second image is a near-duplicate of
the first, so that equal siblings, anti-aliasing and its exceptions all occur often.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pixelmatch.core import pixelmatch as pypi_pixelmatch

from diffie.compare.pixeldiff import pixelmatch

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

channel = st.sampled_from([0, 1, 40, 127, 128, 200, 254, 255]) | st.integers(0, 255)
opaque_colour = st.tuples(channel, channel, channel, st.just(255))
alpha_channel = st.sampled_from([255, 255, 0, 1, 128, 254]) | st.integers(0, 255)
any_colour = st.tuples(channel, channel, channel, alpha_channel)


@st.composite
def image_pairs(draw: st.DrawFn, colour: st.SearchStrategy = opaque_colour) -> tuple[np.ndarray, np.ndarray]:
    w = draw(st.integers(1, 9))
    h = draw(st.integers(1, 9))
    palette = draw(st.lists(colour, min_size=1, max_size=4))
    picks = draw(st.lists(st.integers(0, len(palette) - 1), min_size=w * h, max_size=w * h))
    img1 = np.array([palette[i] for i in picks], dtype=np.uint8).reshape(h, w, 4)
    img2 = img1.copy()
    spot = st.tuples(st.integers(0, h - 1), st.integers(0, w - 1), colour | st.sampled_from(palette))
    changes = draw(st.lists(spot, max_size=max(1, w * h // 3)))
    for y, x, c in changes:
        img2[y, x] = c
    return img1, img2


thresholds = st.sampled_from([0.0, 0.05, 0.1, 0.3, 1.0]) | st.floats(0, 1)
alphas = st.sampled_from([0.0, 0.1, 0.5, 1.0]) | st.floats(0, 1)


@SETTINGS
@given(pair=image_pairs(any_colour), threshold=thresholds, include_aa=st.booleans(), alpha=alphas)
def test_legacy_mode_matches_pypi_pixelmatch(pair, threshold, include_aa, alpha) -> None:
    img1, img2 = pair
    h, w = img1.shape[:2]
    want_out: list[int | float] = [0] * (w * h * 4)
    want = pypi_pixelmatch(img1.tobytes(), img2.tobytes(), w, h, want_out, threshold=threshold,
                           includeAA=include_aa, alpha=alpha)
    out = np.zeros_like(img1)
    got = pixelmatch(img1, img2, out, threshold=threshold, include_aa=include_aa, alpha=alpha,
                     checkerboard=False)
    assert got == want
    assert pixelmatch(img1, img2, threshold=threshold, include_aa=include_aa, checkerboard=False) == want
    assert out.tobytes() == bytes(int(v) for v in want_out)


# --------------------------------------------------------------------------- 7.x reference


def _to_uint8(v: float) -> int:
    return 0 if not math.isfinite(v) else int(math.trunc(v)) & 0xFF


def _js_int32(v: float) -> int:
    t = int(math.trunc(v)) & 0xFFFFFFFF
    return t - (1 << 32) if t >= 1 << 31 else t


def _js_mod2(v: int) -> int:
    return int(math.fmod(v, 2))


def _color_delta(img1: bytes, img2: bytes, k: int, m: int, y_only: bool) -> float:
    r1, g1, b1, a1 = img1[k], img1[k + 1], img1[k + 2], img1[k + 3]
    r2, g2, b2, a2 = img2[m], img2[m + 1], img2[m + 2], img2[m + 3]
    dr: float = r1 - r2
    dg: float = g1 - g2
    db: float = b1 - b2
    da = a1 - a2
    if not dr and not dg and not db and not da:
        return 0
    if a1 < 255 or a2 < 255:
        rb = 48 + 159 * (k % 2)
        gb = 48 + 159 * _js_mod2(_js_int32(k / 1.618033988749895))
        bb = 48 + 159 * _js_mod2(_js_int32(k / 2.618033988749895))
        dr = (r1 * a1 - r2 * a2 - rb * da) / 255
        dg = (g1 * a1 - g2 * a2 - gb * da) / 255
        db = (b1 * a1 - b2 * a2 - bb * da) / 255
    y = dr * 0.29889531 + dg * 0.58662247 + db * 0.11448223
    if y_only:
        return y
    i = dr * 0.59597799 - dg * 0.2741761 - db * 0.32180189
    q = dr * 0.21147017 - dg * 0.52261711 + db * 0.31114694
    delta = 0.5053 * y * y + 0.299 * i * i + 0.1957 * q * q
    return -delta if y > 0 else delta


def _has_many_siblings(img32: list[bytes], x1: int, y1: int, width: int, height: int) -> bool:
    x0, y0 = max(x1 - 1, 0), max(y1 - 1, 0)
    x2, y2 = min(x1 + 1, width - 1), min(y1 + 1, height - 1)
    val = img32[y1 * width + x1]
    zeroes = 1 if x1 == x0 or x1 == x2 or y1 == y0 or y1 == y2 else 0
    for x in range(x0, x2 + 1):
        for y in range(y0, y2 + 1):
            if x == x1 and y == y1:
                continue
            zeroes += val == img32[y * width + x]
            if zeroes > 2:
                return True
    return False


def _antialiased(img: bytes, x1: int, y1: int, width: int, height: int, a32: list[bytes],
                 b32: list[bytes]) -> bool:
    x0, y0 = max(x1 - 1, 0), max(y1 - 1, 0)
    x2, y2 = min(x1 + 1, width - 1), min(y1 + 1, height - 1)
    pos = y1 * width + x1
    zeroes = 1 if x1 == x0 or x1 == x2 or y1 == y0 or y1 == y2 else 0
    lo = hi = 0.0
    min_x = min_y = max_x = max_y = 0
    for x in range(x0, x2 + 1):
        for y in range(y0, y2 + 1):
            if x == x1 and y == y1:
                continue
            delta = _color_delta(img, img, pos * 4, (y * width + x) * 4, True)
            if delta == 0:
                zeroes += 1
                if zeroes > 2:
                    return False
            elif delta < lo:
                lo, min_x, min_y = delta, x, y
            elif delta > hi:
                hi, max_x, max_y = delta, x, y
    if lo == 0 or hi == 0:
        return False
    return (_has_many_siblings(a32, min_x, min_y, width, height)
            and _has_many_siblings(b32, min_x, min_y, width, height)) or (
        _has_many_siblings(a32, max_x, max_y, width, height)
        and _has_many_siblings(b32, max_x, max_y, width, height))


def reference_pixelmatch_7(img1: bytes, img2: bytes, output: bytearray | None, width: int, height: int,
                           threshold: float, include_aa: bool, alpha: float,
                           diff_color_alt: tuple[int, int, int] | None) -> int:
    """pixelmatch 7.x index.js, transcribed; options as in Diffie's defaults otherwise."""
    a32 = [img1[i : i + 4] for i in range(0, len(img1), 4)]
    b32 = [img2[i : i + 4] for i in range(0, len(img2), 4)]

    def draw(pos: int, rgb: tuple[float, float, float]) -> None:
        assert output is not None
        output[pos : pos + 4] = bytes([_to_uint8(rgb[0]), _to_uint8(rgb[1]), _to_uint8(rgb[2]), 255])

    def draw_gray(pos: int) -> None:
        val = 255 + (img1[pos] * 0.29889531 + img1[pos + 1] * 0.58662247 + img1[pos + 2] * 0.11448223 - 255) \
            * alpha * img1[pos + 3] / 255
        draw(pos, (val, val, val))

    if a32 == b32:
        if output is not None:
            for i in range(width * height):
                draw_gray(4 * i)
        return 0
    max_delta = 35215 * threshold * threshold
    diff = 0
    alt = diff_color_alt or (255, 0, 0)
    for y in range(height):
        for x in range(width):
            i = y * width + x
            pos = i * 4
            delta = 0 if a32[i] == b32[i] else _color_delta(img1, img2, pos, pos, False)
            if abs(delta) > max_delta:
                is_aa = _antialiased(img1, x, y, width, height, a32, b32) or _antialiased(
                    img2, x, y, width, height, b32, a32)
                if not include_aa and is_aa:
                    if output is not None:
                        draw(pos, (255, 255, 0))
                else:
                    if output is not None:
                        draw(pos, alt if delta < 0 else (255, 0, 0))
                    diff += 1
            elif output is not None:
                draw_gray(pos)
    return diff


@SETTINGS
@given(pair=image_pairs(any_colour), threshold=thresholds, include_aa=st.booleans(),
       alpha=alphas | st.sampled_from([1.7, -0.5]), alt=st.none() | st.just((0, 255, 0)))
def test_default_mode_matches_pixelmatch_7_transcription(pair, threshold, include_aa, alpha, alt) -> None:
    img1, img2 = pair
    h, w = img1.shape[:2]
    want_out = bytearray(w * h * 4)
    want = reference_pixelmatch_7(img1.tobytes(), img2.tobytes(), want_out, w, h, threshold, include_aa,
                                  alpha, alt)
    out = np.zeros_like(img1)
    got = pixelmatch(img1, img2, out, threshold=threshold, include_aa=include_aa, alpha=alpha,
                     diff_color_alt=alt)
    assert got == want
    assert out.tobytes() == bytes(want_out)



# --------------------------------------------------------------------------- fixture crops

from tests.paths import FIXTURES as SHARED_FIXTURES  # noqa: E402

FIXTURES = SHARED_FIXTURES / "pixelmatch"
PAIRS = [("1a", "1b"), ("2a", "2b"), ("3a", "3b"), ("4a", "4b"), ("5a", "5b"), ("6a", "6b"), ("7a", "7b")]


@cache
def _fixture(name: str) -> np.ndarray:
    with Image.open(FIXTURES / f"{name}.png") as im:
        return np.asarray(im.convert("RGBA"))


@st.composite
def fixture_crops(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Crops of upstream's test pairs: real text, lines and anti-aliasing."""
    a_name, b_name = draw(st.sampled_from(PAIRS))
    a, b = _fixture(a_name), _fixture(b_name)
    h = draw(st.integers(1, 40))
    w = draw(st.integers(1, 40))
    y = draw(st.integers(0, a.shape[0] - h))
    x = draw(st.integers(0, a.shape[1] - w))
    return a[y : y + h, x : x + w], b[y : y + h, x : x + w]


CROP_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@CROP_SETTINGS
@given(pair=fixture_crops(), threshold=thresholds, include_aa=st.booleans())
def test_fixture_crops_legacy_mode_match_pypi_pixelmatch(pair, threshold, include_aa) -> None:
    img1, img2 = pair
    h, w = img1.shape[:2]
    want = pypi_pixelmatch(img1.tobytes(), img2.tobytes(), w, h, None, threshold=threshold,
                           includeAA=include_aa)
    assert pixelmatch(img1, img2, threshold=threshold, include_aa=include_aa, checkerboard=False) == want


@CROP_SETTINGS
@given(pair=fixture_crops(), threshold=thresholds)
def test_fixture_crops_default_mode_match_pixelmatch_7_transcription(pair, threshold) -> None:
    img1, img2 = pair
    h, w = img1.shape[:2]
    want_out = bytearray(w * h * 4)
    want = reference_pixelmatch_7(img1.tobytes(), img2.tobytes(), want_out, w, h, threshold, False, 0.1, None)
    out = np.zeros_like(img1)
    assert pixelmatch(img1, img2, out, threshold=threshold) == want
    assert out.tobytes() == bytes(want_out)
