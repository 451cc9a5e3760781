"""The element map: which DOM element covers which part of a screenshot.

Taken right after each screenshot, written as a JSON artifact next to it: a list of visible
elements in document order (parents before children), each
``{"selector", "text", "x", "y", "width", "height", "style"}`` (``style``: the computed values
of :data:`STYLE_PROPS`, so a comparison can say "colour #36c → #c33"), and for an element
named by its id, ``tag`` (``button.button.primary``: what it is). Coordinates are the screenshot's own
pixels (screenshots are taken with ``scale="css"``): for a full-page shot, page coordinates; for a
viewport shot, what the visual viewport shows — page coordinates minus the scroll offset, times
the viewport's zoom (1 unless a mobile page lacks ``<meta name=viewport>``). The comparer uses
it to say which element a changed region covers ("``#cart > li:nth-of-type(2)`` 'Blue mug' moved").

The selector is short and unique-ish: the nearest ancestor with a unique id, then
``tag.class.class:nth-of-type(n)`` segments, at most :data:`MAX_DEPTH` of them. Everything comes
from the page under test: sizes are bounded again on this side.
"""

from __future__ import annotations

import json
import math
from typing import Any

from playwright.sync_api import Page

from diffie.browser.stabilise import evaluate
from diffie.capture import Box

MAX_ELEMENTS = 2000
MAX_ELEMENT_TEXT = 80
MAX_SELECTOR = 200
MAX_DEPTH = 10
MAX_MASK_BOXES = 200
MAX_STYLE_VALUE = 80
MAX_TAG = 80
# computed properties kept per element: what a reviewer names when a screenshot changes
STYLE_PROPS = ("color", "background-color", "border-top-color", "border-top-width",
               "border-radius", "box-shadow", "opacity", "visibility",
               "font-size", "font-weight", "font-family", "font-style", "line-height",
               "letter-spacing", "text-decoration-line", "text-align", "white-space",
               "padding", "margin", "gap")

# Maps a getBoundingClientRect() onto the screenshot's pixels (screenshots use scale="css").
# Full page: page coordinates. Viewport: what the visual viewport shows, zoomed by its scale — a
# mobile page without <meta name=viewport> is laid out 980 px wide and shown zoomed out.
_IMAGE_SPACE_JS = r"""
const imageSpace = (fullPage) => {
  if (fullPage) {
    const sx = window.scrollX, sy = window.scrollY;
    return (r) => ({x: r.left + sx, y: r.top + sy, width: r.width, height: r.height,
                    w: Infinity, h: Infinity});
  }
  const vv = window.visualViewport;
  const k = vv ? vv.scale : 1, ox = vv ? vv.offsetLeft : 0, oy = vv ? vv.offsetTop : 0;
  const w = vv ? vv.width * k : window.innerWidth, h = vv ? vv.height * k : window.innerHeight;
  return (r) => ({x: (r.left - ox) * k, y: (r.top - oy) * k, width: r.width * k, height: r.height * k, w, h});
};
"""

_ELEMENT_MAP_JS = r"""
([limit, maxText, maxDepth, fullPage, props]) => {
  const SKIP = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'HEAD', 'META', 'LINK', 'TITLE']);
  const view = imageSpace(fullPage);
  const cache = new Map();
  const ident = /^-?[A-Za-z_][A-Za-z0-9_-]*$/;
  const idCounts = new Map();
  for (const el of document.querySelectorAll('[id]')) idCounts.set(el.id, (idCounts.get(el.id) || 0) + 1);
  const segment = (el) => {
    let s = el.tagName.toLowerCase();
    for (const c of Array.from(el.classList).filter(c => ident.test(c)).slice(0, 2)) s += '.' + c;
    const parent = el.parentElement;
    if (parent) {
      let n = 0, idx = 0;
      for (const sib of parent.children) {
        if (sib.tagName === el.tagName) { n++; if (sib === el) idx = n; }
      }
      if (n > 1) s += ':nth-of-type(' + idx + ')';
    }
    return s;
  };
  const selector = (el) => {
    if (cache.has(el)) return cache.get(el);
    let out;
    if (el.id && ident.test(el.id) && idCounts.get(el.id) === 1) out = {sel: '#' + el.id, depth: 1};
    else if (el === document.body || !el.parentElement || el.parentElement === document.documentElement)
      out = {sel: el.tagName.toLowerCase(), depth: 1};
    else {
      const up = selector(el.parentElement);
      if (up.depth >= maxDepth) out = {sel: segment(el), depth: 1, cut: true};
      else out = {sel: up.sel + ' > ' + segment(el), depth: up.depth + 1};
    }
    cache.set(el, out);
    return out;
  };
  const textOf = (el) => {
    const label = el.getAttribute('aria-label') || el.getAttribute('alt') || el.getAttribute('placeholder');
    if (label) return label.replace(/\s+/g, ' ').trim().slice(0, maxText);
    let text = '';
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT, {
      acceptNode: (n) => (n.parentElement && SKIP.has(n.parentElement.tagName))
        ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
    });
    let steps = 0;
    while (text.length < maxText * 2 && walker.nextNode() && steps++ < 500) {
      text += ' ' + walker.currentNode.data;
    }
    return text.replace(/\s+/g, ' ').trim().slice(0, maxText);
  };
  const out = [];
  const all = document.body ? document.body.querySelectorAll('*') : [];
  for (const el of [document.body, ...all]) {
    if (!el || out.length >= limit) break;
    if (SKIP.has(el.tagName)) continue;
    const r = view(el.getBoundingClientRect());
    if (r.width < 1 || r.height < 1) continue;
    if (!fullPage && (r.x + r.width <= 0 || r.y + r.height <= 0 || r.x >= r.w || r.y >= r.h)) continue;
    const visible = !el.checkVisibility
      || el.checkVisibility({opacityProperty: true, visibilityProperty: true});
    if (!visible) continue;
    const cs = getComputedStyle(el);
    const sel = selector(el).sel;
    out.push({selector: sel, text: textOf(el),
              x: r.x, y: r.y, width: r.width, height: r.height,
              style: props.map(p => cs.getPropertyValue(p)),
              ...(sel.startsWith('#') ? {tag: segment(el).replace(/:nth-of-type\(\d+\)$/, '')} : {})});
  }
  return out;
}
"""

_MASK_BOXES_JS = r"""
([selectors, fullPage, limit]) => {
  const view = imageSpace(fullPage);
  const out = [];
  for (const sel of selectors) {
    let els = [];
    try { els = document.querySelectorAll(sel); } catch (e) { continue; }
    for (const el of els) {
      if (out.length >= limit) return out;
      const r = view(el.getBoundingClientRect());
      if (r.width < 1 || r.height < 1) continue;
      out.push([r.x, r.y, r.width, r.height]);
    }
  }
  return out;
}
"""


def _with_helpers(fn: str) -> str:
    """``fn`` (a JS arrow function) with the shared helpers in scope, still one expression."""
    return f"((args) => {{ {_IMAGE_SPACE_JS}\n return ({fn.strip()})(args); }})"


def _num(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(round(value))


def _clean_element(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    selector, text = raw.get("selector"), raw.get("text")
    if not isinstance(selector, str) or not selector:
        return None
    nums = [_num(raw.get(k)) for k in ("x", "y", "width", "height")]
    if any(n is None for n in nums):
        return None
    x, y, w, h = (n or 0 for n in nums)
    out: dict[str, Any] = {"selector": selector[:MAX_SELECTOR],
                           "text": text[:MAX_ELEMENT_TEXT] if isinstance(text, str) else "",
                           "x": x, "y": y, "width": w, "height": h}
    tag = raw.get("tag")
    if isinstance(tag, str) and tag:
        out["tag"] = tag[:MAX_TAG]          # what an id selector is: button.button.primary
    style = raw.get("style")
    if isinstance(style, list) and len(style) == len(STYLE_PROPS):
        out["style"] = {name: value[:MAX_STYLE_VALUE]
                        for name, value in zip(STYLE_PROPS, style, strict=True)
                        if isinstance(value, str) and value}
    return out


def element_map(page: Page, *, full_page: bool, timeout_ms: float = 5000,
                limit: int = MAX_ELEMENTS) -> list[dict[str, Any]]:
    """Visible elements with their boxes (screenshot coordinates), selector, text and
    computed style."""
    raw = evaluate(page, _with_helpers(_ELEMENT_MAP_JS),
                   [limit, MAX_ELEMENT_TEXT, MAX_DEPTH, full_page, list(STYLE_PROPS)],
                   timeout_ms=timeout_ms)
    if not isinstance(raw, list):
        return []
    cleaned = (_clean_element(item) for item in raw[:limit])
    return [item for item in cleaned if item is not None]


def element_map_json(elements: list[dict[str, Any]]) -> bytes:
    return json.dumps(elements, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def mask_boxes(page: Page, selectors: list[str], *, full_page: bool,
               timeout_ms: float = 5000) -> list[Box]:
    """Boxes (screenshot coordinates) of every element the mask selectors match."""
    if not selectors:
        return []
    raw = evaluate(page, _with_helpers(_MASK_BOXES_JS), [selectors, full_page, MAX_MASK_BOXES],
                   timeout_ms=timeout_ms)
    boxes: list[Box] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, list) or len(item) != 4:
            continue
        nums = [_num(v) for v in item]
        if any(n is None for n in nums):
            continue
        x, y, w, h = (n or 0 for n in nums)
        boxes.append(Box(x=x, y=y, width=w, height=h))
    return boxes
