"""Visual findings: compare one screenshot of base with the same screenshot of head.

Per screenshot name present on both sides:

* masked areas (``Screenshot.mask_boxes`` of either side) are ignored;
* with a second render of head (``head2``), the head-vs-head2 differences are *flaky*: they are
  reported as :class:`~diffie.verdict.Flaky` evidence, the head-vs-base pixels inside them (a
  little dilated) are not counted, and what remains must exceed the flaky pixel count (an
  adaptive threshold) to become a finding;
* changed pixels left → a ``visual_change`` finding; different dimensions → ``size_change``
  (the common area is compared too). Each region names the DOM elements under it, taken from
  the head's element map (and base's, for what disappeared), so an agent can go from "pixels
  changed" to "this element moved".
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from diffie.artifacts import ArtifactDir, slug
from diffie.capture import Box, Capture, Screenshot
from diffie.compare.explain import explain
from diffie.compare.regions import DiffResult, RegionBox, compare_files
from diffie.errors import DiffieError, ImageError
from diffie.spec_limits import MAX_SCREENSHOT_PIXELS
from diffie.verdict import Finding, FindingKind, Flaky, Region

log = logging.getLogger(__name__)

# pixelmatch's per-pixel colour tolerance (YIQ, 0..1). pixelmatch's own default, 0.1, absorbs
# anti-aliasing differences between renderers, and with them any hue change at equal lightness
# (a green → slate-blue recolour of ΔE00 28 scores 150 against its allowance of 352). Diffie
# renders base and head with one browser build, one font set and the same raster flags,
# byte-identically (a second render of head measures whatever noise is left): every pixel that
# differs counts. A spec may raise it (`visual_threshold`).
PIXEL_THRESHOLD = 0.0
NOISE_DILATE = 8            # px around a flaky region whose base-vs-head changes are not counted
MAX_REGIONS = 20            # regions kept per finding (largest first)
ELEMENTS_PER_REGION = 3
MAX_ELEMENTS = 5000         # entries read from one element map
ELEMENT_TEXT = 80           # characters of an element's text kept

Rect = tuple[int, int, int, int]   # x, y, width, height


@dataclass(frozen=True)
class Element:
    selector: str
    text: str
    x: float
    y: float
    width: float
    height: float
    style: dict[str, str] = field(default_factory=dict)   # computed values (STYLE_PROPS)
    tag: str = ""          # for an id selector: tag and classes (what the element is)

    @property
    def area(self) -> float:
        return self.width * self.height


def load_elements(out: ArtifactDir, shot: Screenshot | None) -> list[Element]:
    """The screenshot's element map (``[{selector, text, x, y, width, height}]``); [] if absent
    or unreadable — element names are a help, never a reason to fail a comparison."""
    if shot is None or not shot.elements:
        return []
    try:
        raw = json.loads(out.path(shot.elements).read_text(encoding="utf-8"))
    except (OSError, ValueError, DiffieError) as exc:
        log.warning("element map %s unreadable: %s", shot.elements, exc)
        return []
    elements: list[Element] = []
    for item in raw[:MAX_ELEMENTS] if isinstance(raw, list) else []:
        try:
            raw_style = item.get("style")
            style = {str(k)[:40]: str(v)[:80] for k, v in list(raw_style.items())[:20]} \
                if isinstance(raw_style, dict) else {}
            el = Element(selector=str(item["selector"])[:200],
                         text=" ".join(str(item.get("text") or "").split())[:ELEMENT_TEXT],
                         x=float(item["x"]), y=float(item["y"]),
                         width=float(item["width"]), height=float(item["height"]),
                         style=style, tag=str(item.get("tag") or "")[:80])
        except (KeyError, TypeError, ValueError):
            continue
        if el.width > 0 and el.height > 0:
            elements.append(el)
    return elements


def _overlap(el: Element, r: Rect) -> float:
    x, y, w, h = r
    ox = min(el.x + el.width, x + w) - max(el.x, x)
    oy = min(el.y + el.height, y + h) - max(el.y, y)
    return ox * oy if ox > 0 and oy > 0 else 0.0


def _encloses(el: Element, r: Rect) -> bool:
    x, y, w, h = r
    return el.x <= x and el.y <= y and el.x + el.width >= x + w and el.y + el.height >= y + h


def elements_under(rect: Rect, elements: Sequence[Element], limit: int = ELEMENTS_PER_REGION,
                   ) -> list[Element]:
    """The elements that best name a changed region: the smallest element enclosing it, the
    elements mostly inside it (largest overlap first), then the smallest overlapping ones.
    When the enclosing element is much larger than the region (``body`` around a moved
    button), the elements inside come first: they are the more specific answer."""
    touching = [e for e in elements if _overlap(e, rect) > 0]
    enclosing = sorted((e for e in touching if _encloses(e, rect)), key=lambda e: e.area)[:1]
    inside = sorted((e for e in touching if not _encloses(e, rect)
                     and _overlap(e, rect) >= 0.5 * e.area), key=lambda e: -_overlap(e, rect))
    partial = sorted((e for e in touching if not _encloses(e, rect)
                      and _overlap(e, rect) < 0.5 * e.area), key=lambda e: e.area)
    area = max(rect[2] * rect[3], 1)
    if enclosing and inside and enclosing[0].area > 4 * area:
        ordered = inside[:1] + enclosing + inside[1:] + partial
    else:
        ordered = enclosing + inside + partial
    picks: list[Element] = []
    seen: set[str] = set()
    for e in ordered:
        if len(picks) >= limit:
            break
        if e.selector not in seen:
            picks.append(e)
            seen.add(e.selector)
    return picks


def _box_text(e: Element) -> str:
    return f"{e.x:.0f},{e.y:.0f} {e.width:.0f}x{e.height:.0f}"


def _region(box: RegionBox, head_els: Sequence[Element], base_els: Sequence[Element]) -> Region:
    """A Region naming its elements: ``selector``, ``text``, ``box`` (head page coordinates);
    ``base_box`` when the same selector sat elsewhere on base (it moved or resized);
    ``side: base`` for an element only found there (removed, or moved away)."""
    rect = (box.x, box.y, box.width, box.height)
    base_by_selector: dict[str, Element] = {}
    for e in base_els:
        base_by_selector.setdefault(e.selector, e)
    names: list[dict[str, str]] = []
    for e in elements_under(rect, head_els):
        entry = {"selector": e.selector, "text": e.text, "box": _box_text(e)}
        before = base_by_selector.get(e.selector)
        if before is not None and _box_text(before) != entry["box"]:
            entry["base_box"] = _box_text(before)
        names.append(entry)
    names.sort(key=lambda n: "base_box" not in n)      # a moved element explains the most
    head_picks = elements_under(rect, head_els, limit=1)
    vague = not head_picks or (_encloses(head_picks[0], rect)
                               and head_picks[0].area > 4 * max(box.width * box.height, 1))
    known = {n["selector"] for n in names}
    for e in elements_under(rect, base_els, limit=2):   # what was there before (removed, moved)
        if e.selector not in known:
            entry = {"selector": e.selector, "text": e.text, "box": _box_text(e), "side": "base"}
            # only a large container on head: the element that disappeared says more
            if vague and not (_encloses(e, rect) and e.area > 4 * max(box.width * box.height, 1)):
                names.insert(0, entry)
                vague = False
            else:
                names.append(entry)
            known.add(e.selector)
    return Region(x=box.x, y=box.y, width=box.width, height=box.height, pixels=box.pixels,
                  elements=names)


def _mask_rects(*shots: Screenshot | None) -> list[Rect]:
    boxes: list[Box] = [b for s in shots if s is not None for b in s.mask_boxes]
    return [(b.x, b.y, b.width, b.height) for b in boxes if b.width > 0 and b.height > 0]


def _dilate(regions: Sequence[RegionBox], by: int = NOISE_DILATE) -> list[Rect]:
    return [(r.x - by, r.y - by, r.width + 2 * by, r.height + 2 * by) for r in regions]


def _save_diff(result: DiffResult, out: ArtifactDir, name: str) -> str | None:
    if result.diff is None:
        return None
    arr = np.ascontiguousarray(result.diff, dtype=np.uint8)
    Image.fromarray(arr).save(out.path(name), optimize=False)
    return name


def _describe_regions(regions: Sequence[Region], limit: int = 3) -> str:
    parts: list[str] = []
    for reg in regions[:limit]:
        el = reg.elements[0] if reg.elements else None
        if el is None:
            parts.append(f"({reg.x},{reg.y} {reg.width}x{reg.height})")
            continue
        text = f' "{el["text"][:40]}"' if el.get("text") else ""
        moved = f" (was at {el['base_box']})" if el.get("base_box") else ""
        gone = " (on base)" if el.get("side") == "base" else ""
        parts.append(f"{el['selector'][:60]}{text}{moved}{gone}")
    more = f" and {len(regions) - limit} more" if len(regions) > limit else ""
    return ", ".join(parts) + more


@dataclass
class ScreenshotComparison:
    finding: Finding | None
    flaky: Flaky | None


def compare_screenshot(base_cap: Capture, head_cap: Capture, base_shot: Screenshot,
                       head_shot: Screenshot, out: ArtifactDir, *,
                       head2_shot: Screenshot | None = None,
                       masks_in_count: bool = False,
                       max_pixels: int = MAX_SCREENSHOT_PIXELS,
                       threshold: float = PIXEL_THRESHOLD) -> ScreenshotComparison:
    """Compare one screenshot of base with head (and head2, for the noise floor).

    ``masks_in_count``: compare the pixels under mask boxes too (for when the browser paints
    masks, so a moved or resized masked element still shows); by default they are ignored.
    ``max_pixels``: a larger screenshot is not decoded (:class:`ImageError`).
    ``threshold``: pixelmatch's per-pixel colour tolerance (see :data:`PIXEL_THRESHOLD`).
    """
    flow, viewport, name = head_cap.flow, head_cap.viewport, head_shot.name
    masks = [] if masks_in_count else _mask_rects(base_shot, head_shot)

    flaky: Flaky | None = None
    noise: list[Rect] = []
    noise_pixels = 0
    size_is_flaky = False
    if head2_shot is not None:
        noise_masks = [] if masks_in_count else _mask_rects(head_shot, head2_shot)
        r2 = compare_files(out.path(head_shot.artifact), out.path(head2_shot.artifact),
                           ignore=noise_masks, max_pixels=max_pixels, threshold=threshold)
        size_is_flaky = r2.size_changed
        if r2.changed_pixels > 0 or r2.size_changed:
            flaky_name = _save_diff(r2, out, slug("flaky", flow, viewport, name) + ".png")
            flaky = Flaky(flow=flow, viewport=viewport, screenshot=name, pixels=r2.changed_pixels,
                          evidence=[n for n in (flaky_name, head_shot.artifact, head2_shot.artifact)
                                    if n])
            noise = _dilate(r2.regions)
            noise_pixels = r2.changed_pixels

    result = compare_files(out.path(base_shot.artifact), out.path(head_shot.artifact),
                           ignore=masks + noise, max_pixels=max_pixels, threshold=threshold)
    size_change = result.size_changed and not (
        size_is_flaky and head2_shot is not None
        and (base_shot.width, base_shot.height) == (head2_shot.width, head2_shot.height))
    # full pages over DIFFIE_MAX_SCREENSHOT_PIXELS keep only their top: compare the page sizes
    full_a, full_b = _full_size(base_shot), _full_size(head_shot)
    clipped = bool(base_shot.clipped_from or head_shot.clipped_from)
    clipped_resize = clipped and full_a != full_b
    size_change = size_change or clipped_resize
    if result.changed_pixels <= noise_pixels and not size_change:
        return ScreenshotComparison(None, flaky)

    diff_name = _save_diff(result, out, slug("diff", flow, viewport, name) + ".png")
    head_els = load_elements(out, head_shot)
    base_els = load_elements(out, base_shot)
    why = explain(base_els, head_els, base_size=result.size_a, head_size=result.size_b)
    boxes = sorted(result.regions, key=lambda r: -r.pixels)[:MAX_REGIONS]
    regions = [_region(b, head_els, base_els) for b in boxes]
    step = next((s for s in head_cap.steps if s.index == head_shot.step), None)
    counted = result.changed_pixels if result.changed_pixels > noise_pixels else 0
    pct = f"{result.ratio * 100:.2f}%"
    if size_change:
        (wa, ha), (wb, hb) = (full_a, full_b) if clipped_resize else (result.size_a, result.size_b)
        message = f"screenshot {name!r} changed size from {wa}x{ha} to {wb}x{hb}"
        if clipped:
            message += (" (only the top of the page was captured: DIFFIE_MAX_SCREENSHOT_PIXELS)")
        if counted:
            message += (f"; {counted:,} pixels ({pct}) of the common area changed"
                        f" in {len(result.regions)} region(s): {_describe_regions(regions)}")
        kind: FindingKind = "size_change"
    else:
        cause = f"{why.summary()} — " if why else ""
        message = (f"screenshot {name!r} changed: {cause}{counted:,} pixels ({pct})"
                   f" in {len(result.regions)} region(s): {_describe_regions(regions)}")
        kind = "visual_change"
    details: dict[str, Any] = {
        "key": f"screenshot {name}",
        "screenshot": name,
        "changed_pixels": counted,
        "total_pixels": result.total_pixels,
        "ratio": result.ratio if counted else 0.0,
        "ignored_pixels": result.ignored_pixels,
        "size_base": list(result.size_a),
        "size_head": list(result.size_b),
        "regions_total": len(result.regions),
        "noise_threshold": noise_pixels,
        "pixel_threshold": threshold,
        "diff": diff_name,
        "base": base_shot.artifact,
        "head": head_shot.artifact,
        "stable": {"base": base_shot.stable, "head": head_shot.stable},
    }
    if why:
        details["cause"] = why.summary()
        details["cause_key"] = why.key
        details["causes"] = [{"kind": c.kind, "selector": c.selector, "change": c.text,
                              **({"elements": c.count, "members": list(c.members)}
                                 if c.members else {})}
                             for c in why.causes]
        details["moved"] = {"elements": why.moved, "by": list(why.shift)}
    if clipped:
        details["clipped_from"] = {"base": base_shot.clipped_from, "head": head_shot.clipped_from}
    details["fingerprint"] = fingerprint(kind, flow, viewport, name, out.path(head_shot.artifact),
                                         result.regions, max_pixels=max_pixels)
    finding = Finding(
        kind=kind, flow=flow, viewport=viewport, step=head_shot.step,
        step_description=step.description if step else None, message=message,
        evidence=[n for n in (diff_name, base_shot.artifact, head_shot.artifact) if n],
        details=details, regions=regions,
    )
    return ScreenshotComparison(finding, flaky)


def fingerprint(kind: str, flow: str, viewport: str, screenshot: str, head_png: Path,
                regions: Sequence[RegionBox], *, max_pixels: int) -> str:
    """What an approval of a visual finding remembers: the flow, viewport, screenshot and
    the head's pixels inside the box around every changed region (the whole head image for a
    size change, or when there are no regions). A later run whose head shows the same pixels
    there — the same change, rendered again — has the same fingerprint; any other change to
    that area, or a change elsewhere on the screenshot, has another."""
    digest = hashlib.sha256(f"{kind}|{flow}|{viewport}|{screenshot}".encode())
    try:
        with Image.open(head_png) as img:
            if img.width * img.height > max_pixels:
                raise ImageError(f"{head_png.name} is larger than {max_pixels} pixels")
            rgba = img.convert("RGBA")
            if regions and kind == "visual_change":
                left = min(r.x for r in regions)
                top = min(r.y for r in regions)
                right = max(r.x + r.width for r in regions)
                bottom = max(r.y + r.height for r in regions)
                rgba = rgba.crop((left, top, right, bottom))
                digest.update(f"|{left},{top},{right},{bottom}".encode())
            digest.update(f"|{rgba.width}x{rgba.height}|".encode())
            digest.update(rgba.tobytes())
    except (OSError, ImageError) as exc:
        log.warning("no fingerprint for %s: %s", head_png.name, exc)
        digest.update(b"|unreadable")
    return "fp-" + digest.hexdigest()[:32]


def _full_size(shot: Screenshot) -> tuple[int, int]:
    """The page's size: the screenshot's, or the full page's when the shot was clipped."""
    if shot.clipped_from and len(shot.clipped_from) == 2:
        return shot.clipped_from[0], shot.clipped_from[1]
    return shot.width, shot.height


def screenshot_differs(base_shot: Screenshot, head_shot: Screenshot, out: ArtifactDir, *,
                       masks_in_count: bool = False, max_pixels: int = MAX_SCREENSHOT_PIXELS,
                       threshold: float = PIXEL_THRESHOLD) -> bool:
    """Whether :func:`compare_screenshot` could find anything in this pair, with or without a
    second render of head: pixels that differ outside the masks, or another size. A pair that
    does not differ gives no finding whatever the noise floor says (the noise can only take
    pixels away), so its head needs no second render."""
    if _full_size(base_shot) != _full_size(head_shot):
        return True
    a, b = out.path(base_shot.artifact), out.path(head_shot.artifact)
    try:
        if a.read_bytes() == b.read_bytes():
            return False
        masks = [] if masks_in_count else _mask_rects(base_shot, head_shot)
        result = compare_files(a, b, ignore=masks, max_pixels=max_pixels, threshold=threshold)
    except (OSError, DiffieError):
        return True          # unreadable: the comparison proper says why
    return result.changed_pixels > 0 or result.size_changed


def visual_findings(base: Capture, head: Capture, out: ArtifactDir, *, head2: Capture | None = None,
                    masks_in_count: bool = False, max_pixels: int = MAX_SCREENSHOT_PIXELS,
                    threshold: float = PIXEL_THRESHOLD) -> tuple[list[Finding], list[Flaky]]:
    """Visual findings of one flow×viewport. A screenshot taken on one side only (the flow
    stopped early) gives no visual finding: the step finding covers it. An unreadable
    screenshot raises :class:`~diffie.errors.ImageError` (the run cannot be verified)."""
    base_shots = {s.name: s for s in base.screenshots}
    head2_shots = {s.name: s for s in head2.screenshots} if head2 else {}
    findings: list[Finding] = []
    flaky: list[Flaky] = []
    for shot in head.screenshots:
        base_shot = base_shots.get(shot.name)
        if base_shot is None:
            continue
        try:
            cmp = compare_screenshot(base, head, base_shot, shot, out,
                                     head2_shot=head2_shots.get(shot.name),
                                     masks_in_count=masks_in_count, max_pixels=max_pixels,
                                     threshold=threshold)
        except OSError as exc:   # a missing or unreadable screenshot must not read as "no change"
            raise ImageError(f"screenshot {shot.name!r} of {head.flow}/{head.viewport} cannot be"
                             f" compared: {exc}") from exc
        if cmp.finding is not None:
            findings.append(cmp.finding)
        if cmp.flaky is not None:
            flaky.append(cmp.flaky)
    return findings, flaky
