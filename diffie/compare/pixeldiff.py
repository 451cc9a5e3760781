"""Pixel diff with exactly mapbox/pixelmatch 7.2.0's answers, vectorised with NumPy.

The reference is pixelmatch 7.2.0 (npm). Every number below is computed in float64 in the
same order of operations as the JavaScript, and stored the way a ``Uint8Array`` stores a
double (truncated toward zero, modulo 256), so counts and diff images are byte-equal to the
reference (see ``tests/unit/test_pixeldiff.py``, which runs upstream's own fixtures).

Outline (per pair of RGBA images):

1. Pixels whose 32-bit RGBA values are equal cannot differ (fast path: all equal).
2. For the others, the YIQ colour delta (Kotsarenko & Ramos) is compared with
   ``35215 * threshold**2``.
3. Only the pixels over the threshold go through anti-aliasing detection (Vysniauskas
   2009): the 3x3 neighbourhood in each image is inspected, vectorised over that set.
4. The output shows unchanged pixels as a faded grey copy of ``img1``, anti-aliased pixels
   in ``aa_color`` and counted differences in ``diff_color`` (``diff_color_alt`` where
   ``img2`` is darker).

``checkerboard=True`` (default, 7.x) blends semi-transparent pixels with a checkerboard-like
background before comparing them; ``checkerboard=False`` reproduces pixelmatch 5.x/6.x, which
blends them with white (as the PyPI ``pixelmatch`` port and Playwright's comparator do),
using 5.x's own arithmetic.

:mod:`diffie.compare.regions` builds Diffie's view on top: common area of differently sized
screenshots, ignore rectangles, and changed pixels clustered into boxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from diffie.errors import ImageError

__all__ = ["pixelmatch", "pixelmatch_images"]

U8 = npt.NDArray[np.uint8]
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]

# YIQ coefficients, exactly as written in pixelmatch.
_Y = (0.29889531, 0.58662247, 0.11448223)
_I = (0.59597799, 0.27417610, 0.32180189)
_Q = (0.21147017, 0.52261711, 0.31114694)
_PHI = 1.618033988749895
_PHI2 = 2.618033988749895

# The 8 neighbours in the order pixelmatch visits them: x outer, y inner. The order decides
# which of several equally dark (bright) neighbours is "the" darkest (brightest) one.
_NDX = np.array([-1, -1, -1, 0, 0, 1, 1, 1], dtype=np.int64)[:, None]
_NDY = np.array([-1, 0, 1, -1, 1, -1, 0, 1], dtype=np.int64)[:, None]

_CHUNK = 1 << 15  # pixels per block when drawing the grey background (stays in cache)
_BLOCK = 1 << 13  # pixel pairs per block in the colour delta and anti-aliasing steps


# --------------------------------------------------------------------------- validation


def _check_rgba(name: str, img: object) -> U8:
    if not isinstance(img, np.ndarray):
        raise ImageError(f"{name} must be a numpy.ndarray of RGBA pixels, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ImageError(f"{name} must have dtype uint8 (8-bit RGBA), got {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 4:
        raise ImageError(
            f"{name} must have shape (height, width, 4) (RGBA), got {tuple(img.shape)}; "
            "convert it first, e.g. PIL's image.convert('RGBA')"
        )
    return np.ascontiguousarray(img)


def _size(img: np.ndarray) -> tuple[int, int]:
    return int(img.shape[1]), int(img.shape[0])


def _rgb_tuple(name: str, value: Sequence[float]) -> tuple[float, float, float]:
    if len(value) != 3:
        raise ImageError(f"{name} must be an (r, g, b) triple, got {value!r}")
    return float(value[0]), float(value[1]), float(value[2])


def _to_byte(v: float) -> int:
    """What storing ``v`` into a Uint8Array keeps: truncation, then modulo 256."""
    if not math.isfinite(v):
        return 0
    return int(math.trunc(v)) & 0xFF


def _pixel_u32(rgb: tuple[float, float, float]) -> np.uint32:
    raw = np.array([_to_byte(rgb[0]), _to_byte(rgb[1]), _to_byte(rgb[2]), 255], dtype=np.uint8)
    return np.uint32(raw.view(np.uint32)[0])


_GRAY_MUL = np.array([1, 1, 1, 0], dtype=np.uint8).view(np.uint32)[0]
_OPAQUE = np.array([0, 0, 0, 255], dtype=np.uint8).view(np.uint32)[0]


# --------------------------------------------------------------------------- colour maths


def _yiq(p1: U8, p2: U8, k: I64, checkerboard: bool, y_only: bool) -> tuple[F64, F64, F64]:
    """The Y, I, Q differences of pixelmatch's colorDelta over arrays of pixel pairs.

    ``p1[..., :4]`` and ``p2`` broadcast together; ``k`` is the byte offset of the first
    pixel (it places the 7.x checkerboard background). I and Q are empty when ``y_only``.
    Identical pixels give exactly 0.
    """
    p1, p2 = np.broadcast_arrays(p1, p2)
    r1, g1, b1, a1 = (p1[..., c] for c in range(4))
    r2, g2, b2, a2 = (p2[..., c] for c in range(4))
    none = np.empty(0)
    if checkerboard:
        dr = np.subtract(r1, r2, dtype=np.float64)
        dg = np.subtract(g1, g2, dtype=np.float64)
        db = np.subtract(b1, b2, dtype=np.float64)
        semi = (a1 & a2) != 255  # either alpha < 255: blend with the background
        count = int(np.count_nonzero(semi))
        if count * 4 > semi.size:  # mostly semi-transparent: everywhere (exact for opaque too)
            dr, dg, db = _checkerboard_diffs(r1, g1, b1, a1, r2, g2, b2, a2, k)
        elif count:
            kk = np.broadcast_to(k, semi.shape)[semi]
            dr[semi], dg[semi], db[semi] = _checkerboard_diffs(
                r1[semi], g1[semi], b1[semi], a1[semi], r2[semi], g2[semi], b2[semi], a2[semi], kk
            )
        y = _weighted(dr, dg, db, _Y, (1, 1))
        if y_only:
            return y, none, none
        return y, _weighted(dr, dg, db, _I, (-1, -1)), _weighted(dr, dg, db, _Q, (-1, 1))
    fr1, fg1, fb1 = _blend_white(r1, g1, b1, a1)
    fr2, fg2, fb2 = _blend_white(r2, g2, b2, a2)
    y = _weighted(fr1, fg1, fb1, _Y, (1, 1))
    y -= _weighted(fr2, fg2, fb2, _Y, (1, 1))
    if y_only:
        return y, none, none
    i = _weighted(fr1, fg1, fb1, _I, (-1, -1))
    i -= _weighted(fr2, fg2, fb2, _I, (-1, -1))
    q = _weighted(fr1, fg1, fb1, _Q, (-1, 1))
    q -= _weighted(fr2, fg2, fb2, _Q, (-1, 1))
    return y, i, q


def _checkerboard_diffs(r1: U8, g1: U8, b1: U8, a1: U8, r2: U8, g2: U8, b2: U8, a2: U8,
                        k: I64) -> tuple[F64, F64, F64]:
    """7.x: ``(c1 * a1 - c2 * a2 - background * (a1 - a2)) / 255`` per channel.

    Every product is an exact integer in float64, as in JS; for two opaque pixels the
    result is exactly ``c1 - c2``. The background depends on the byte offset ``k``.
    """
    fa1 = a1.astype(np.float64)
    fa2 = a2.astype(np.float64)
    da = fa1 - fa2
    out = []
    for c1, c2, bg in (
        (r1, r2, 48.0 + 159.0 * (k % 2)),
        (g1, g2, 48.0 + 159.0 * _js_int32_mod2(k / _PHI)),
        (b1, b2, 48.0 + 159.0 * _js_int32_mod2(k / _PHI2)),
    ):
        d = np.multiply(c1, fa1)
        d -= np.multiply(c2, fa2)
        d -= bg * da
        d /= 255.0
        out.append(d)
    return out[0], out[1], out[2]


def _weighted(r: F64, g: F64, b: F64, c: tuple[float, float, float], signs: tuple[int, int]) -> F64:
    """``(r * c0 +- g * c1) +- b * c2``, evaluated left to right like the JS expression."""
    out = np.multiply(r, c[0])
    t = np.multiply(g, c[1])
    if signs[0] > 0:
        out += t
    else:
        out -= t
    np.multiply(b, c[2], out=t)
    if signs[1] > 0:
        out += t
    else:
        out -= t
    return out


def _delta_y(p1: U8, p2: U8, k: I64, checkerboard: bool) -> F64:
    """colorDelta(..., yOnly=true): the brightness difference of pixel pairs."""
    return _yiq(p1, p2, k, checkerboard, y_only=True)[0]


def _over_threshold(p1: U8, p2: U8, k: I64, checkerboard: bool, max_delta: float) -> tuple[Bool, Bool]:
    """Which pairs have ``|colorDelta| > max_delta``, and for those whether img2 is darker."""
    y, i, q = _yiq(p1, p2, k, checkerboard, y_only=False)
    # 0.5053 * y * y + 0.299 * i * i + 0.1957 * q * q, in that order
    delta = np.multiply(y, 0.5053)
    delta *= y
    t = np.multiply(i, 0.299)
    t *= i
    delta += t
    np.multiply(q, 0.1957, out=t)
    t *= q
    delta += t
    over = delta > max_delta  # delta >= 0: |signed delta| > max_delta
    return over, y[over] > 0  # pixelmatch's sign: negative (darker in img2) where y > 0


def _js_int32_mod2(v: F64) -> F64:
    """``(v | 0) % 2`` in JavaScript: ToInt32 (truncate, wrap to 32 bits), remainder with sign."""
    t = np.trunc(v)
    if t.size and (t.min() < -(2**31) or t.max() >= 2**31):
        t = (((t.astype(np.int64) + 2**31) & 0xFFFFFFFF) - 2**31).astype(np.float64)
    return np.fmod(t, 2.0)


def _blend_white(r: U8, g: U8, b: U8, a: U8) -> tuple[F64, F64, F64]:
    """pixelmatch 5.x: ``255 + (c - 255) * (a / 255)`` for pixels with alpha < 255.

    For alpha 255 the formula gives ``c`` back exactly, so it is applied to all or none.
    """
    if (a == 255).all():
        return r.astype(np.float64), g.astype(np.float64), b.astype(np.float64)
    fa = a / 255.0
    fr, fg, fb = ((c - 255.0) * fa + 255.0 for c in (r, g, b))
    return fr, fg, fb


def _gray(px: U8, alpha: float, checkerboard: bool, out32: U32) -> None:
    """drawGrayPixel for every pixel: ``255 + (Y - 255) * alpha * a / 255``, truncated."""
    n = px.shape[0]
    safe = 0.0 <= alpha <= 1.0  # then every value is in (-1, 256) and a plain cast truncates
    buf = np.empty(min(n, _CHUNK), dtype=np.float64)
    tmp = np.empty_like(buf)
    for s in range(0, n, _CHUNK):
        e = min(n, s + _CHUNK)
        p = px[s:e]
        v = buf[: e - s]
        t = tmp[: e - s]
        np.multiply(p[:, 0], _Y[0], out=v)
        np.multiply(p[:, 1], _Y[1], out=t)
        v += t
        np.multiply(p[:, 2], _Y[2], out=t)
        v += t
        v -= 255.0
        if checkerboard:  # 7.x: ((Y - 255) * alpha * a) / 255
            v *= alpha
            np.multiply(v, p[:, 3], out=v)
            v /= 255.0
        else:  # 5.x: blend(Y, alpha * a / 255)
            np.multiply(p[:, 3], alpha, out=t)
            t /= 255.0
            v *= t
        v += 255.0
        o = out32[s:e]
        if safe:
            np.copyto(o, v, casting="unsafe")  # C cast: truncation toward zero
        else:
            np.copyto(o, np.trunc(v).astype(np.int64) & 0xFF, casting="unsafe")
        o *= _GRAY_MUL
        o |= _OPAQUE


# --------------------------------------------------------------------------- anti-aliasing


def _neighbours(idx: I64, w: int, h: int) -> tuple[I64, I64, I64]:
    """Flat indices of the 8 neighbours (shape (8, n)), border flag (0/1), invalid count.

    Neighbours outside the image point at the pixel itself; ``invalid`` counts them.
    """
    nidx = idx + (_NDY * w + _NDX)
    y = idx // w
    x = idx - y * w
    edge = (x == 0) | (x == w - 1) | (y == 0) | (y == h - 1)
    invalid = np.zeros(idx.shape[0], dtype=np.int64)
    b = np.flatnonzero(edge)
    if b.size:
        nx = x[b] + _NDX
        ny = y[b] + _NDY
        valid = (nx >= 0) & (nx < w) & (ny >= 0) & (ny < h)
        nidx[:, b] = np.where(valid, nidx[:, b], idx[b])
        invalid[b] = 8 - valid.sum(axis=0)
    return nidx, edge.astype(np.int64), invalid


def _many_siblings_in_both(img32: U32, other32: U32, pos: I64, w: int, h: int) -> Bool:
    """hasManySiblings(img, pos) && hasManySiblings(other, pos).

    A pixel has many siblings when 3+ of its 8 neighbours (a border counts as one) have
    exactly its RGBA value.
    """
    nidx, border, invalid = _neighbours(pos, w, h)
    base = border - invalid  # invalid neighbours point at the pixel itself: always equal
    many = base + (img32[nidx] == img32[pos]).sum(axis=0) > 2
    many &= base + (other32[nidx] == other32[pos]).sum(axis=0) > 2
    return np.asarray(many, dtype=bool)


def _brightness_key8(v: U32) -> F64:
    """``8e8 * Y`` of opaque pixels, exactly (integers below 2**38), from packed RGBA values.

    For two opaque pixels, ``key(p) - key(q)`` has the sign of pixelmatch's floating-point
    brightness delta, is 0 exactly when their RGB are equal, and orders the neighbours of a
    pixel exactly as the JS comparisons do: no two RGB triples share a key (checked in the
    tests), so keys of distinct colours differ by 8 or more, i.e. 1e-8 in Y, far above the
    ~1e-13 rounding error of the float computation. The factor 8 leaves room to encode a
    neighbour's number (0..7) in the low bits.
    """
    c = np.ascontiguousarray(v).view(np.uint8).reshape(v.shape + (4,))
    key = np.multiply(c[..., 0], 8.0 * 29889531)
    key += np.multiply(c[..., 1], 8.0 * 58662247)
    key += np.multiply(c[..., 2], 8.0 * 11448223)
    return key


_J = np.arange(8, dtype=np.float64)[:, None]
_J_REV = 7.0 - _J


def _antialiased(img32: U32, other32: U32, idx: I64, w: int, h: int, checkerboard: bool) -> Bool:
    """pixelmatch's antialiased(img, x, y, ...) for every flat index in ``idx``."""
    nidx, border, invalid = _neighbours(idx, w, h)
    nv = img32[nidx]
    cv = img32[idx]
    d8 = _brightness_key8(cv) - _brightness_key8(nv)
    # Invalid neighbours point at the pixel itself: delta 0, not counted as equal siblings.
    zeroes = border + (d8 == 0).sum(axis=0) - invalid
    # min/max with the neighbour's number in the low bits: ties go to the first neighbour
    # visited, as with the strict comparisons of the JS loop.
    lo_code = (d8 + _J).min(axis=0)
    hi_code = (d8 + _J_REV).max(axis=0)
    ok = (zeroes <= 2) & (lo_code < 0) & (hi_code > 7)
    lo_j = lo_code.astype(np.int64) & 7  # two's complement: & 7 is the remainder mod 8
    hi_j = 7 - (hi_code.astype(np.int64) & 7)
    semi = np.flatnonzero((np.bitwise_and.reduce(nv, axis=0) & cv & _OPAQUE) != _OPAQUE)
    if semi.size:  # some of the 9 pixels are semi-transparent: the exact float computation
        cpx = cv[semi].view(np.uint8).reshape(1, -1, 4)
        npx = np.ascontiguousarray(nv[:, semi]).view(np.uint8).reshape(8, -1, 4)
        d = _delta_y(cpx, npx, 4 * idx[semi][None], checkerboard)
        zs = border[semi] + (d == 0).sum(axis=0) - invalid[semi]
        ok[semi] = (zs <= 2) & (d.min(axis=0) < 0) & (d.max(axis=0) > 0)
        lo_j[semi] = d.argmin(axis=0)
        hi_j[semi] = d.argmax(axis=0)
    sel = np.flatnonzero(ok)
    result = np.zeros(idx.shape[0], dtype=np.bool_)
    if sel.size == 0:
        return result
    found = _many_siblings_in_both(img32, other32, nidx[lo_j[sel], sel], w, h)
    rest = np.flatnonzero(~found)
    if rest.size:
        sr = sel[rest]
        found[rest] = _many_siblings_in_both(img32, other32, nidx[hi_j[sr], sr], w, h)
    result[sel] = found
    return result


# --------------------------------------------------------------------------- core


@dataclass
class _Match:
    diff_idx: I64  # flat indices of counted differences
    darker: Bool  # per diff_idx: img2 darker (drawn in diff_color_alt)
    aa_idx: I64  # flat indices of differences taken for anti-aliasing


def _classify(a: U8, b: U8, threshold: float, include_aa: bool, checkerboard: bool) -> _Match | None:
    """Classify the pixels of two equally sized contiguous images; None when identical."""
    h, w = a.shape[:2]
    a32: U32 = a.reshape(-1).view(np.uint32)
    b32: U32 = b.reshape(-1).view(np.uint32)
    idx = np.flatnonzero(a32 != b32)
    if idx.size == 0:
        return None
    pa = a32[idx].view(np.uint8).reshape(-1, 4)
    pb = b32[idx].view(np.uint8).reshape(-1, 4)
    max_delta = 35215 * threshold * threshold
    cands: list[I64] = []
    darks: list[Bool] = []
    for s in range(0, idx.size, _BLOCK):  # blocks keep the float temporaries in cache
        e = s + _BLOCK
        over, dark = _over_threshold(pa[s:e], pb[s:e], 4 * idx[s:e], checkerboard, max_delta)
        cands.append(idx[s:e][over])
        darks.append(dark)
    cand = np.concatenate(cands)
    darker = np.concatenate(darks)
    aa = np.zeros(cand.shape[0], dtype=np.bool_)
    if not include_aa:
        for s in range(0, cand.size, _BLOCK):
            e = s + _BLOCK
            part = _antialiased(a32, b32, cand[s:e], w, h, checkerboard)
            rest = np.flatnonzero(~part)
            if rest.size:
                part[rest] = _antialiased(b32, a32, cand[s:e][rest], w, h, checkerboard)
            aa[s:e] = part
    keep = ~aa
    return _Match(cand[keep], darker[keep], cand[aa])


def _draw(
    a: U8,
    match: _Match | None,
    out32: U32,
    *,
    alpha: float,
    aa_color: tuple[float, float, float],
    diff_color: tuple[float, float, float],
    diff_color_alt: tuple[float, float, float] | None,
    diff_mask: bool,
    checkerboard: bool,
) -> None:
    if not diff_mask:
        _gray(a.reshape(-1, 4), alpha, checkerboard, out32)
    if match is None:
        return
    if not diff_mask and match.aa_idx.size:
        out32[match.aa_idx] = _pixel_u32(aa_color)
    if match.diff_idx.size:
        main = _pixel_u32(diff_color)
        if diff_color_alt is None:
            out32[match.diff_idx] = main
        else:
            out32[match.diff_idx] = np.where(match.darker, _pixel_u32(diff_color_alt), main)


def _output_u32(output: object, shape: tuple[int, ...]) -> tuple[U32, bool]:
    """A flat uint32 view of ``output`` to draw into, and whether it must be copied back."""
    if not isinstance(output, np.ndarray) or output.dtype != np.uint8:
        raise ImageError("output must be a uint8 numpy.ndarray of shape (height, width, 4)")
    if output.shape != shape:
        raise ImageError(f"output has shape {tuple(output.shape)}, the images have {shape}")
    if not output.flags.writeable:
        raise ImageError("output is read-only")
    if output.flags.c_contiguous and output.ctypes.data % 4 == 0:
        return output.reshape(-1).view(np.uint32), False
    return np.ascontiguousarray(output).reshape(-1).view(np.uint32).copy(), True


def pixelmatch(
    img1: np.ndarray,
    img2: np.ndarray,
    output: np.ndarray | None = None,
    *,
    threshold: float = 0.1,
    include_aa: bool = False,
    alpha: float = 0.1,
    aa_color: tuple[int, int, int] = (255, 255, 0),
    diff_color: tuple[int, int, int] = (255, 0, 0),
    diff_color_alt: tuple[int, int, int] | None = None,
    diff_mask: bool = False,
    checkerboard: bool = True,
) -> int:
    """Count the pixels that differ between two HxWx4 uint8 RGBA images (pixelmatch 7.2.0).

    ``output`` (HxWx4 uint8), when given, is filled in place with the diff image: a faded
    grey copy of ``img1``, anti-aliased pixels in ``aa_color``, differences in
    ``diff_color`` (``diff_color_alt`` where img2 is darker). With ``diff_mask`` only the
    differences are drawn and every other output pixel is left as it was.
    ``checkerboard=False`` is pixelmatch 5.x/6.x (semi-transparent pixels blended with white).
    Raises ImageError for non-RGBA or non-uint8 input and for images of different sizes.
    """
    a = _check_rgba("img1", img1)
    b = _check_rgba("img2", img2)
    if a.shape != b.shape:
        (w1, h1), (w2, h2) = _size(a), _size(b)
        raise ImageError(
            f"Image sizes do not match: img1 is {w1}x{h1}, img2 is {w2}x{h2} (width x height); "
            "diff_regions() compares the common area of images of different sizes"
        )
    aa_rgb = _rgb_tuple("aa_color", aa_color)
    diff_rgb = _rgb_tuple("diff_color", diff_color)
    alt_rgb = None if diff_color_alt is None else _rgb_tuple("diff_color_alt", diff_color_alt)
    out32, copy_back = (None, False) if output is None else _output_u32(output, a.shape)
    match = _classify(a, b, threshold, include_aa, checkerboard)
    if output is not None and out32 is not None:
        _draw(a, match, out32, alpha=alpha, aa_color=aa_rgb, diff_color=diff_rgb,
              diff_color_alt=alt_rgb, diff_mask=diff_mask, checkerboard=checkerboard)
        if copy_back:
            output[...] = out32.view(np.uint8).reshape(output.shape)
    return 0 if match is None else int(match.diff_idx.size)


def pixelmatch_images(a: Image.Image, b: Image.Image, **options: Any) -> tuple[int, Image.Image]:
    """pixelmatch() over two Pillow images (converted to RGBA); returns (count, diff image)."""
    arr_a = np.asarray(a.convert("RGBA"))
    arr_b = np.asarray(b.convert("RGBA"))
    out = np.zeros(arr_a.shape, dtype=np.uint8)
    count = pixelmatch(arr_a, arr_b, out, **options)
    return count, Image.fromarray(out, "RGBA")


