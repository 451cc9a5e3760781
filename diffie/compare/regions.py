"""Changed pixels as regions: bounding boxes, ignore rectangles, screenshots of different sizes.

Built on :mod:`diffie.compare.pixeldiff` (the pixelmatch-exact classification); this module adds
what findings need: the changed pixels clustered into boxes, areas excluded from the count while
staying visible in the diff image, and a comparison that never crashes on a size change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from diffie.compare.pixeldiff import I64, U8, Bool, _check_rgba, _classify, _draw, _size
from diffie.errors import ImageError
from diffie.spec_limits import MAX_SCREENSHOT_PIXELS


@dataclass
class RegionBox:
    """Bounding box of one cluster of changed pixels; ``pixels`` = changed pixels inside."""

    x: int
    y: int
    width: int
    height: int
    pixels: int


@dataclass
class DiffResult:
    """The outcome of diff_regions() / compare_files().

    ``total_pixels`` and ``ratio`` refer to the compared (common, top-left) area;
    ``ignored_pixels`` counts the changed pixels that fell inside ignore rectangles (they
    are drawn in ``diff`` but not counted in ``changed_pixels`` nor boxed in ``regions``).
    """

    changed_pixels: int
    total_pixels: int
    ratio: float
    regions: list[RegionBox]
    diff: np.ndarray | None
    size_a: tuple[int, int]
    size_b: tuple[int, int]
    size_changed: bool
    ignored_pixels: int


def _ignored(idx: I64, w: int, ignore: Sequence[tuple[int, int, int, int]]) -> Bool:
    """Which of the pixels (flat indices) lie in one of the (x, y, width, height) rectangles."""
    hidden = np.zeros(idx.shape[0], dtype=np.bool_)
    if not ignore or idx.size == 0:
        for rect in ignore:
            _check_rect(rect)
        return hidden
    ys = idx // w
    xs = idx - ys * w
    for rect in ignore:
        x, y, rw, rh = _check_rect(rect)
        hidden |= (xs >= x) & (xs < x + rw) & (ys >= y) & (ys < y + rh)
    return hidden


def _check_rect(rect: Sequence[int]) -> tuple[int, int, int, int]:
    if len(rect) != 4:
        raise ImageError(f"ignore rectangles are (x, y, width, height), got {rect!r}")
    x, y, rw, rh = (int(v) for v in rect)
    if rw < 0 or rh < 0:
        raise ImageError(f"ignore rectangle has a negative size: {rect!r}")
    return x, y, rw, rh


def _label_cells(cells: I64, gh: int, gw: int) -> I64:
    """8-connected components of a set of grid cells (sorted flat ids), as labels 0..n-1.

    Pure NumPy: neighbours are found by binary search, components by min-label hooking
    with pointer jumping (a few rounds for realistic shapes).
    """
    n = cells.size
    cy = cells // gw
    cx = cells - cy * gw
    us: list[I64] = []
    vs: list[I64] = []
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        target = cells + (dy * gw + dx)
        pos = np.minimum(np.searchsorted(cells, target), n - 1)
        hit = (cy + dy < gh) & (cx + dx >= 0) & (cx + dx < gw) & (cells[pos] == target)
        us.append(np.flatnonzero(hit))
        vs.append(pos[hit])
    u = np.concatenate(us)
    v = np.concatenate(vs)
    parent = np.arange(n, dtype=np.int64)
    while u.size:
        pu, pv = parent[u], parent[v]
        differ = pu != pv
        if not differ.any():
            break
        u, v, pu, pv = u[differ], v[differ], pu[differ], pv[differ]
        np.minimum.at(parent, np.maximum(pu, pv), np.minimum(pu, pv))
        while True:  # pointer jumping until every cell points at its root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    labels = np.unique(parent, return_inverse=True)[1]
    return labels.reshape(-1).astype(np.int64)


def _regions(idx: I64, h: int, w: int, merge_distance: int) -> list[RegionBox]:
    """Cluster changed pixels (sorted flat indices) into boxes, sorted by pixels, desc.

    Pixels are binned into square cells of side ``max(1, merge_distance)`` and 8-connected
    occupied cells are merged, so changes at most ``merge_distance`` apart always share a
    box (changes up to ``2 * merge_distance - 1`` apart may too).
    """
    if idx.size == 0:
        return []
    s = max(1, int(merge_distance))
    gh, gw = -(-h // s), -(-w // s)
    ys = idx // w
    xs = idx - ys * w
    cell = (ys // s) * gw + xs // s
    occupied = np.zeros(gh * gw, dtype=np.bool_)
    occupied[cell] = True
    cells = np.flatnonzero(occupied)
    label = _label_cells(cells, gh, gw)[np.searchsorted(cells, cell)]
    n = int(label.max()) + 1
    x0 = np.full(n, w, dtype=np.int64)
    y0 = np.full(n, h, dtype=np.int64)
    x1 = np.full(n, -1, dtype=np.int64)
    y1 = np.full(n, -1, dtype=np.int64)
    np.minimum.at(x0, label, xs)
    np.minimum.at(y0, label, ys)
    np.maximum.at(x1, label, xs)
    np.maximum.at(y1, label, ys)
    pixels = np.bincount(label, minlength=n)
    order = np.lexsort((x0, y0, -pixels))
    return [
        RegionBox(int(x0[j]), int(y0[j]), int(x1[j] - x0[j] + 1), int(y1[j] - y0[j] + 1), int(pixels[j]))
        for j in order
    ]


def diff_regions(
    img1: np.ndarray,
    img2: np.ndarray,
    *,
    threshold: float = 0.1,
    include_aa: bool = False,
    ignore: Sequence[tuple[int, int, int, int]] = (),
    merge_distance: int = 8,
    with_diff_image: bool = True,
    checkerboard: bool = True,
) -> DiffResult:
    """Compare two RGBA screenshots, possibly of different sizes, into a DiffResult.

    Images of different sizes are compared over their common top-left area and flagged
    ``size_changed``. Changed pixels inside ``ignore`` rectangles ((x, y, width, height))
    are not counted but stay visible in the diff image.
    """
    a = _check_rgba("img1", img1)
    b = _check_rgba("img2", img2)
    size_a, size_b = _size(a), _size(b)
    h = min(a.shape[0], b.shape[0])
    w = min(a.shape[1], b.shape[1])
    if (a.shape[0], a.shape[1]) != (h, w):
        a = np.ascontiguousarray(a[:h, :w])
    if (b.shape[0], b.shape[1]) != (h, w):
        b = np.ascontiguousarray(b[:h, :w])
    match = _classify(a, b, threshold, include_aa, checkerboard)
    diff: np.ndarray | None = None
    if with_diff_image:
        diff = np.zeros((h, w, 4), dtype=np.uint8)
        _draw(
            a, match, diff.reshape(-1).view(np.uint32), alpha=0.1, aa_color=(255, 255, 0),
            diff_color=(255, 0, 0), diff_color_alt=None, diff_mask=False, checkerboard=checkerboard,
        )
    changed = np.empty(0, dtype=np.int64) if match is None else match.diff_idx
    hidden = _ignored(changed, w, ignore)
    ignored = int(np.count_nonzero(hidden))
    if ignored:
        changed = changed[~hidden]
    count = int(changed.size)
    total = h * w
    return DiffResult(
        changed_pixels=count,
        total_pixels=total,
        ratio=count / total if total else 0.0,
        regions=_regions(changed, h, w, merge_distance),
        diff=diff,
        size_a=size_a,
        size_b=size_b,
        size_changed=size_a != size_b,
        ignored_pixels=ignored,
    )


def _load(path: Path, max_pixels: int = MAX_SCREENSHOT_PIXELS) -> U8:
    """Decode an image as RGBA; its size is checked (from the header) before it is decoded."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image {path.name} is {width}x{height} = {width * height:,} pixels, more than "
                    f"the limit of {max_pixels:,} (DIFFIE_MAX_SCREENSHOT_PIXELS): not compared")
            return np.asarray(im.convert("RGBA"))
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image {path.name} is too large to decode safely ({exc}); the limit is "
                         f"{max_pixels:,} pixels (DIFFIE_MAX_SCREENSHOT_PIXELS)") from exc
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc


def compare_files(a: Path, b: Path, *, max_pixels: int = MAX_SCREENSHOT_PIXELS,
                  **kw: Any) -> DiffResult:
    """diff_regions() over two image files (any format Pillow reads, converted to RGBA); an
    image of more than ``max_pixels`` pixels raises :class:`ImageError` before it is decoded."""
    return diff_regions(_load(Path(a), max_pixels), _load(Path(b), max_pixels), **kw)
