"""What changed on a page in DOM terms, from the element maps of base and head (selector,
text and box of each visible element, recorded with every screenshot).

Elements are matched by selector. A cause is a change of an element itself:

- ``resized``: its box changed size, and no element inside it did (a container that grew
  because its child grew is not a cause; the child is);
- ``text``: its text changed, and no element inside it changed text;
- ``restyled``: a computed property changed (colour, background, border, font, opacity...),
  and for an inherited property (colour, font) its parent did not change the same way;
- ``added`` / ``removed``: only on one side, and its parent is on both.

The same change on many elements (a brand colour on every link, a border on every card, one
word changed in every card) is one cause, as a style rule would be: ``a.nav-link (12 elements)
color … → …``, with the elements it covers kept beside it.

Elements whose box only moved are counted apart ("moved because something above grew"), with
the offset most of them moved by. Each cause has a ``key`` that does not depend on where on
the page or in which viewport it was seen (selector and size delta, a hash of the texts), so
the same cause in ten screenshots groups as one. A change the maps cannot show (a colour, a
font) gives no cause: the pixel regions still say where.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

TOLERANCE = 1.0              # pixels of box change that are rounding, not change
MAX_CAUSES = 5
TEXT_CHARS = 60
GROUP_MIN = 3                # the same change on this many elements reads as one rule
MEMBERS = 20                 # selectors kept beside a grouped cause
_POSITIONAL = re.compile(r":(?:nth-of-type|nth-child|nth-last-of-type|nth-last-child)\(\d+\)")

CauseKind = Literal["resized", "restyled", "text", "added", "removed"]
# inherited: a change on a parent shows on every descendant; the parent is the cause
INHERITED = frozenset({"color", "font-size", "font-weight", "font-family", "font-style",
                       "visibility"})


class Boxed(Protocol):
    @property
    def selector(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def x(self) -> float: ...
    @property
    def y(self) -> float: ...
    @property
    def width(self) -> float: ...
    @property
    def height(self) -> float: ...
    @property
    def style(self) -> dict[str, str]: ...
    @property
    def tag(self) -> str: ...


@dataclass(frozen=True)
class Cause:
    kind: CauseKind
    selector: str          # the element, or for a group what its elements are (``a.nav-link``)
    key: str
    text: str
    count: int = 1         # elements with this change
    members: tuple[str, ...] = ()      # a group's selectors (first MEMBERS, page order)
    resized: bool = False  # the change made an element a new size (what is below it moves)


@dataclass
class _Change:
    """One element's own change, before changes alike are grouped."""
    kind: CauseKind
    selector: str
    signature: str         # the change without the element: grouping and keys
    what: str              # the change, said of one element
    what_many: str         # the change, said of a group
    resized: bool = False


@dataclass
class Explanation:
    causes: list[Cause] = field(default_factory=list)
    moved: int = 0
    shift: tuple[int, int] = (0, 0)

    def __bool__(self) -> bool:
        return bool(self.causes or self.moved)

    @property
    def key(self) -> str:
        """Stable across screenshots and viewports of the same change."""
        parts = [c.key for c in self.causes[:3]]
        if not parts and self.moved:
            parts = [f"moved|{self.shift[0]:+d}|{self.shift[1]:+d}"]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def summary(self) -> str:
        parts = [c.text for c in self.causes[:3]]
        if len(self.causes) > 3:
            parts.append(f"{len(self.causes) - 3} more element change(s)")
        if self.moved:
            grew = any(c.resized for c in self.causes)
            below = " below" if grew else ""
            parts.append(f"{self.moved} element(s){below} moved {_direction(self.shift)}")
        return "; ".join(parts)


def _direction(shift: tuple[int, int]) -> str:
    dx, dy = shift
    if dx == 0:
        return f"{'down' if dy > 0 else 'up'} {abs(dy)} px"
    if dy == 0:
        return f"{'right' if dx > 0 else 'left'} {abs(dx)} px"
    return f"by ({dx:+d}, {dy:+d}) px"


def _inside(child: str, parent: str) -> bool:
    return child.startswith(parent + " > ") or child.startswith(parent + " ")


def _parent(selector: str) -> str | None:
    head, sep, _ = selector.rpartition(" > ")
    return head if sep else None


def _name(selector: str, elements: dict[str, Boxed]) -> str:
    """The selector, and for an id what the element is: ``#checkout (button.button.primary)``."""
    e = elements.get(selector)
    tag = getattr(e, "tag", "") if e is not None else ""
    return f"{selector} ({tag})" if tag and selector.startswith("#") else selector


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS - 1] + "…"


def explain(base: Sequence[Boxed], head: Sequence[Boxed], *,
            base_size: tuple[int, int] | None = None,
            head_size: tuple[int, int] | None = None) -> Explanation:
    """The element changes from ``base``'s map to ``head``'s (see the module doc). With the
    screenshots' sizes, an element that only left (or entered) the captured area by the
    common shift is moved, not removed (added)."""
    before: dict[str, Boxed] = {}
    for e in base:
        before.setdefault(e.selector, e)
    after: dict[str, Boxed] = {}
    for e in head:
        after.setdefault(e.selector, e)
    resized: dict[str, tuple[Boxed, Boxed]] = {}
    retexted: dict[str, tuple[Boxed, Boxed]] = {}
    shifts: Counter[tuple[int, int]] = Counter()
    for sel, h in after.items():
        b = before.get(sel)
        if b is None:
            continue
        if abs(h.width - b.width) > TOLERANCE or abs(h.height - b.height) > TOLERANCE:
            resized[sel] = (b, h)
        elif abs(h.x - b.x) > TOLERANCE or abs(h.y - b.y) > TOLERANCE:
            shifts[(round(h.x - b.x), round(h.y - b.y))] += 1
        if h.text != b.text:
            retexted[sel] = (b, h)
    changes: list[_Change] = []
    restyled = _restyled(before, after)
    for sel, diffs in restyled.items():
        what = ", ".join(f"{prop} {old} → {new}" for prop, old, new in diffs[:3])
        sized = ""
        if sel in resized:
            b, h = resized[sel]
            sized = f" (size {b.width:.0f}x{b.height:.0f} → {h.width:.0f}x{h.height:.0f})"
        changes.append(_Change("restyled", sel,
                               "|".join(f"{prop}:{old}>{new}" for prop, old, new in diffs),
                               what + sized, what, resized=sel in resized))
    for sel, (b, h) in retexted.items():
        if not any(_inside(other, sel) for other in retexted):
            digest = hashlib.sha256(f"{b.text}\0{h.text}".encode()).hexdigest()[:12]
            what = f"text {_clip(b.text)!r} → {_clip(h.text)!r}"
            changes.append(_Change("text", sel, digest, what, what))
    for sel, (b, h) in resized.items():
        if any(_inside(other, sel) for other in resized) or sel in retexted or sel in restyled:
            continue
        dw, dh = round(h.width - b.width), round(h.height - b.height)
        if abs(dw) <= TOLERANCE:
            what, many = f"height {b.height:.0f} → {h.height:.0f} px", f"height {dh:+d} px"
        elif abs(dh) <= TOLERANCE:
            what, many = f"width {b.width:.0f} → {h.width:.0f} px", f"width {dw:+d} px"
        else:
            what = f"size {b.width:.0f}x{b.height:.0f} → {h.width:.0f}x{h.height:.0f} px"
            many = f"size {dw:+d}x{dh:+d} px"
        changes.append(_Change("resized", sel, f"{dw:+d}|{dh:+d}", what, many, resized=True))
    shift = shifts.most_common(1)[0][0] if shifts else (0, 0)
    for sel, e in after.items():
        parent = _parent(sel)
        if sel in before or (parent is not None and parent not in before):
            continue
        if _outside(e, (-shift[0], -shift[1]), base_size):
            shifts[shift] += 1                     # it came into view: it moved
        else:
            changes.append(_Change("added", sel, _what_it_is(sel, after),
                                   f"added ({e.width:.0f}x{e.height:.0f} at "
                                   f"{e.x:.0f},{e.y:.0f})", "added"))
    for sel, e in before.items():
        parent = _parent(sel)
        if sel in after or (parent is not None and parent not in after):
            continue
        if _outside(e, shift, head_size):
            shifts[shift] += 1                     # it went out of view: it moved
        else:
            changes.append(_Change("removed", sel, _what_it_is(sel, before), "removed",
                                   "removed"))
    causes = _causes(changes, before, after)
    order = {"resized": 0, "restyled": 1, "text": 2, "added": 3, "removed": 4}
    causes.sort(key=lambda c: (order[c.kind], _top(c.members[0] if c.members else c.selector,
                                                  before, after)))
    moved = sum(shifts.values()) if shift != (0, 0) else 0
    return Explanation(causes=causes[:MAX_CAUSES], moved=moved, shift=shift)


def _what_it_is(selector: str, elements: dict[str, Boxed]) -> str:
    """What kind of element a selector names, without its place: ``a.nav-link`` for
    ``body > nav > a.nav-link:nth-of-type(3)``, the tag and classes for an id."""
    e = elements.get(selector)
    tag = getattr(e, "tag", "") if e is not None else ""
    if tag and selector.startswith("#"):
        return str(tag)
    last = _last(selector)
    return _POSITIONAL.sub("", last) or last


def _last(selector: str) -> str:
    """The selector's last step (``#nav-cart``, ``a.nav-link:nth-of-type(2)``)."""
    return selector.rpartition(" > ")[2].rsplit(" ", 1)[-1]


def _causes(changes: list[_Change], before: dict[str, Boxed],
            after: dict[str, Boxed]) -> list[Cause]:
    """One cause per element, except that the same change on GROUP_MIN or more elements is
    one cause naming what they are (the rule a stylesheet or template would have)."""
    alike: defaultdict[tuple[CauseKind, str], list[_Change]] = defaultdict(list)
    for ch in changes:
        alike[(ch.kind, ch.signature)].append(ch)
    causes: list[Cause] = []
    for (kind, signature), group in alike.items():
        if len(group) < GROUP_MIN:
            for ch in group:
                elements = before if ch.kind == "removed" else after
                key = (f"{ch.kind}|{ch.selector}" if ch.kind in ("added", "removed")
                       else f"{ch.kind}|{ch.selector}|{ch.signature}")
                causes.append(Cause(ch.kind, ch.selector, key,
                                    f"{_name(ch.selector, elements)} {ch.what}",
                                    resized=ch.resized))
            continue
        elements = before if kind == "removed" else after
        group.sort(key=lambda ch: _top(ch.selector, before, after))
        kinds = sorted({_what_it_is(ch.selector, elements) for ch in group})
        if len(kinds) == 1:
            name = f"{kinds[0]} ({len(group)} elements)"
        else:           # no one rule: name the first elements (when names say more)
            shown = ", ".join(kinds[:3]) + (f", +{len(kinds) - 3}" if len(kinds) > 3 else "")
            names = list(dict.fromkeys(_POSITIONAL.sub("", _last(ch.selector))
                                       for ch in group))
            if set(names) == set(kinds):
                name = f"{len(group)} elements ({shown})"
            else:
                more = f" +{len(names) - 3} more" if len(names) > 3 else ""
                name = f"{', '.join(names[:3])}{more} ({len(group)} elements: {shown})"
        # the key leaves out the count: a narrow viewport may show fewer of the same elements
        causes.append(Cause(kind, ", ".join(kinds), f"{kind}-rule|{','.join(kinds)}|{signature}",
                            f"{name} {group[0].what_many}", count=len(group),
                            members=tuple(ch.selector for ch in group[:MEMBERS]),
                            resized=any(ch.resized for ch in group)))
    return causes


def _restyled(before: dict[str, Boxed],
              after: dict[str, Boxed]) -> dict[str, list[tuple[str, str, str]]]:
    """Elements whose computed style changed: ``{selector: [(property, before, after)]}``,
    without inherited changes their parent shows too."""
    changed: dict[str, list[tuple[str, str, str]]] = {}
    for sel, h in after.items():
        b = before.get(sel)
        if b is None or not b.style or not h.style:
            continue
        diffs = [(prop, b.style[prop], h.style[prop]) for prop in h.style
                 if prop in b.style and b.style[prop] != h.style[prop]]
        if diffs:
            changed[sel] = diffs
    out: dict[str, list[tuple[str, str, str]]] = {}
    for sel, diffs in changed.items():
        parent = _parent(sel)
        from_parent = set(changed.get(parent, [])) if parent else set()
        own = [d for d in diffs if not (d[0] in INHERITED and d in from_parent)]
        if own:
            out[sel] = own
    return out


def _outside(e: Boxed, shift: tuple[int, int], size: tuple[int, int] | None) -> bool:
    """Whether ``e`` moved by ``shift`` lies outside a screenshot of ``size``."""
    if size is None or shift == (0, 0):
        return False
    x, y = e.x + shift[0], e.y + shift[1]
    return x >= size[0] or y >= size[1] or x + e.width <= 0 or y + e.height <= 0


def _top(selector: str, before: dict[str, Boxed], after: dict[str, Boxed]) -> float:
    """Page order: the element's top on head (else base)."""
    e = after.get(selector) or before.get(selector)
    return e.y if e is not None else 0.0
