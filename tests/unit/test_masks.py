"""Masks are painted onto the PNG: exactly the boxes (clipped to the image), one colour."""

from __future__ import annotations

import io

from PIL import Image

from diffie.browser.masks import MASK_RGBA, paint_masks
from diffie.capture import Box


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (w, h), (10, 20, 30, 255)).save(buf, format="PNG")
    return buf.getvalue()


def test_boxes_are_filled_and_clipped_to_the_image() -> None:
    out = paint_masks(_png(20, 10), [Box(x=2, y=3, width=4, height=2),
                                     Box(x=18, y=-5, width=10, height=8)])
    im = Image.open(io.BytesIO(out)).convert("RGBA")
    masked = {(x, y) for x in range(20) for y in range(10) if im.getpixel((x, y)) == MASK_RGBA}
    expected = {(x, y) for x in range(2, 6) for y in range(3, 5)}
    expected |= {(x, y) for x in range(18, 20) for y in range(0, 3)}
    assert masked == expected


def test_no_box_inside_the_image_leaves_the_png_untouched() -> None:
    png = _png(5, 5)
    assert paint_masks(png, []) is png
    assert paint_masks(png, [Box(x=50, y=50, width=3, height=3)]) is png
