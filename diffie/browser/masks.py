"""Masks painted onto the screenshot, not into the page.

Playwright's own ``mask=`` option adds elements (``x-pw-glass``) to the page's DOM while it
shoots: a page watching its DOM sees them. Diffie instead measures the masked elements' boxes
(:func:`diffie.browser.elements.mask_boxes`, screenshot coordinates) right before each shot and
fills them with one fixed colour in the PNG, so masked areas are identical on both sides and the
page never sees a thing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw

from diffie.capture import Box

MASK_RGBA = (0xFF, 0x00, 0xFF, 0xFF)     # one fixed colour: masked areas are identical on both sides


def paint_masks(png: bytes, boxes: Sequence[Box]) -> bytes:
    """``png`` with every box (clipped to the image) filled with :data:`MASK_RGBA`."""
    if not boxes:
        return png
    with Image.open(io.BytesIO(png)) as im:
        image = im.convert("RGBA")
    draw = ImageDraw.Draw(image)
    width, height = image.size
    painted = False
    for b in boxes:
        x0, y0 = max(b.x, 0), max(b.y, 0)
        x1, y1 = min(b.x + b.width, width), min(b.y + b.height, height)
        if x1 <= x0 or y1 <= y0:
            continue
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=MASK_RGBA)
        painted = True
    if not painted:
        return png
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
