"""The HTML report: one self-contained folder per run (``index.html`` next to its images).

Templates and CSS are package data of ``reports`` (``reports/templates``, ``reports/static``);
the CSS is inlined, every link is a relative artifact name, so the folder can be zipped, served
or opened from disk. Jinja2 autoescaping is always on: every string from the app under test
(console text, URLs, stacks, selectors, element text) is escaped, and clipped to a bounded size.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from jinja2 import BaseLoader, Environment, StrictUndefined, TemplateNotFound
from markupsafe import Markup

from diffie.artifacts import ArtifactDir, slug
from diffie.capture import Capture, Screenshot, StepResult
from diffie.compact import Group, shared_causes
from diffie.errors import DiffieError
from diffie.text import clip as clip_text
from diffie.verdict import Finding, Flaky, NotVerified, Region, Verdict

MAX_ROWS = 200              # rows shown per console / network table
MAX_CELL = 500              # characters shown per table cell
MAX_STACK = 4000            # characters of a stack shown
MAX_DETAIL = 1000           # characters of one detail value shown
MAX_LOG = 16_000            # characters of a server log or deploy output shown

STATUS_LABEL = {"pass": "Pass", "changed": "Changed", "fail": "Fail", "error": "Error"}


class _PackageLoader(BaseLoader):
    """Templates from ``reports/templates`` (works from a wheel, a zip or a checkout)."""

    def get_source(self, environment: Environment, template: str,
                   ) -> tuple[str, str | None, Callable[[], bool] | None]:
        if "/" in template or "\\" in template or template.startswith("."):
            raise TemplateNotFound(template)
        res = files("reports").joinpath("templates").joinpath(template)
        if not res.is_file():
            raise TemplateNotFound(template)
        return res.read_text(encoding="utf-8"), None, lambda: True


def clip(value: object, limit: int = MAX_CELL) -> str:
    return clip_text(value, limit)


def _ms(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def environment() -> Environment:
    env = Environment(loader=_PackageLoader(), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["clip"] = clip
    env.filters["ms"] = _ms
    return env


def _js() -> Markup:
    """The report's one script (compare views, zoom, keys), inlined; its hash is in the CSP."""
    js = files("reports").joinpath("static").joinpath("report.js").read_text(encoding="utf-8")
    return Markup(js.replace("</", "<\\/"))     # our own file; never closes the <script> early


def script_hash() -> str:
    """``'sha256-…'`` of the inline script: the only script the report's CSP allows."""
    digest = hashlib.sha256(str(_js()).encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def report_csp(*, meta: bool) -> str:
    """The report's Content-Security-Policy: its own images, inline styles, its one script by
    hash, requests only to its own origin (the approval); nothing from anywhere else.
    ``meta``: the ``<meta>`` form (which also allows ``file:`` images, for a report opened
    from disk; frame-ancestors needs the header)."""
    images = "'self' data: file: blob:" if meta else "'self' data:"
    policy = (f"default-src 'none'; img-src {images}; style-src 'self' 'unsafe-inline'; "
              f"script-src {script_hash()}; connect-src 'self'; base-uri 'none'; "
              "form-action 'none'")
    return policy if meta else policy + "; font-src 'self' data:; frame-ancestors 'none'"


def _css() -> Markup:
    css = files("reports").joinpath("static").joinpath("report.css").read_text(encoding="utf-8")
    return Markup(css.replace("</", "<\\/"))     # our own file; never closes the <style> early


# -- view model -------------------------------------------------------------------------------

@dataclass
class Box:
    """A region drawn over an image, in percent of the image's size."""

    left: float
    top: float
    width: float
    height: float
    label: str

    @property
    def cx(self) -> float:
        return self.left + self.width / 2

    @property
    def cy(self) -> float:
        return self.top + self.height / 2

    @property
    def style(self) -> str:
        return (f"left:{self.left:.3f}%;top:{self.top:.3f}%;"
                f"width:{self.width:.3f}%;height:{self.height:.3f}%")


@dataclass
class ShotView:
    name: str
    base: str | None
    head: str | None
    head2: str | None
    diff: str | None
    base_size: str
    head_size: str
    boxes: list[Box] = field(default_factory=list)        # over the diff image
    head_boxes: list[Box] = field(default_factory=list)   # over the head image
    finding: Finding | None = None
    flaky: Flaky | None = None
    flaky_diff: str | None = None


@dataclass
class StepRow:
    index: int
    action: str
    description: str
    line: int | None
    base: StepResult | None
    head: StepResult | None


@dataclass
class Section:
    anchor: str
    flow: str
    viewport: str
    captures: dict[str, Capture]
    steps: list[StepRow]
    shots: list[ShotView]
    findings: list[Finding]
    flaky: list[Flaky]
    not_verified: NotVerified | None = None

    @property
    def logged(self) -> dict[str, Capture]:
        """The sides whose logs are shown: base and head (head2 only renders screenshots)."""
        return {k: v for k, v in self.captures.items() if k in ("base", "head")}

    @property
    def status(self) -> str:
        if any(f.is_error for f in self.findings):
            return "fail"
        if self.findings and any(not f.pre_existing for f in self.findings):
            return "changed"
        return "not-verified" if self.not_verified is not None else "pass"


def _boxes(regions: Iterable[Region], width: int, height: int) -> list[Box]:
    if width <= 0 or height <= 0:
        return []
    out: list[Box] = []
    for i, r in enumerate(regions, 1):
        x0, y0 = max(r.x, 0), max(r.y, 0)
        x1, y1 = min(r.x + r.width, width), min(r.y + r.height, height)
        if x1 <= x0 or y1 <= y0:
            continue
        names = ", ".join(e.get("selector", "") for e in r.elements[:3])
        label = f"#{i}: {r.pixels} px" + (f" — {names}" if names else "")
        out.append(Box(100 * x0 / width, 100 * y0 / height, 100 * (x1 - x0) / width,
                       100 * (y1 - y0) / height, clip(label, 200)))
    return out


def _exists(out: ArtifactDir, name: str | None) -> str | None:
    if not name:
        return None
    try:
        return name if out.path(name).is_file() else None
    except (DiffieError, OSError):   # an invalid name is simply not linked
        return None


def _shot_views(out: ArtifactDir, caps: dict[str, Capture], findings: list[Finding],
                flaky: list[Flaky]) -> list[ShotView]:
    shots: dict[str, dict[str, Screenshot]] = {}
    for side, cap in caps.items():
        for s in cap.screenshots:
            shots.setdefault(s.name, {})[side] = s
    views: list[ShotView] = []
    for name, by_side in shots.items():
        finding = next((f for f in findings if f.kind in ("visual_change", "size_change")
                        and f.details.get("screenshot") == name), None)
        fl = next((x for x in flaky if x.screenshot == name), None)
        base, head = by_side.get("base"), by_side.get("head")
        view = ShotView(
            name=name,
            base=_exists(out, base.artifact if base else None),
            head=_exists(out, head.artifact if head else None),
            head2=_exists(out, by_side["head2"].artifact if "head2" in by_side else None),
            diff=_exists(out, str(finding.details.get("diff") or "") if finding else None),
            base_size=f"{base.width}×{base.height}" if base else "",
            head_size=f"{head.width}×{head.height}" if head else "",
            finding=finding, flaky=fl,
            flaky_diff=_exists(out, fl.evidence[0] if fl and fl.evidence else None),
        )
        if finding is not None and base is not None and head is not None:
            cw, ch = min(base.width, head.width), min(base.height, head.height)
            view.boxes = _boxes(finding.regions, cw, ch)
            view.head_boxes = _boxes(finding.regions, head.width, head.height)
        views.append(view)
    return views


def _step_rows(caps: dict[str, Capture]) -> list[StepRow]:
    base = {s.index: s for s in caps["base"].steps} if "base" in caps else {}
    head = {s.index: s for s in caps["head"].steps} if "head" in caps else {}
    rows: list[StepRow] = []
    for idx in sorted(set(base) | set(head)):
        ref = head.get(idx) or base[idx]
        rows.append(StepRow(idx, ref.action, ref.description, ref.line, base.get(idx), head.get(idx)))
    return rows


def _sections(verdict: Verdict, captures: dict[str, list[Capture]], out: ArtifactDir,
              ) -> list[Section]:
    keys: list[tuple[str, str]] = []
    by_key: dict[tuple[str, str], dict[str, Capture]] = {}
    for side in ("head", "base", "head2"):
        for cap in captures.get(side, []):
            key = (cap.flow, cap.viewport)
            if key not in by_key:
                keys.append(key)
                by_key[key] = {}
            by_key[key][side] = cap
    for f in verdict.findings:                 # findings whose captures were not passed
        if f.flow and f.viewport and (f.flow, f.viewport) not in by_key:
            keys.append((f.flow, f.viewport))
            by_key[(f.flow, f.viewport)] = {}
    sections: list[Section] = []
    for flow, vp in keys:
        caps = by_key[(flow, vp)]
        fs = [f for f in verdict.findings if (f.flow, f.viewport) == (flow, vp)]
        fl = [x for x in verdict.flaky if (x.flow, x.viewport) == (flow, vp)]
        sections.append(Section(anchor=slug("fv", flow, vp), flow=flow, viewport=vp, captures=caps,
                                steps=_step_rows(caps), shots=_shot_views(out, caps, fs, fl),
                                findings=fs, flaky=fl,
                                not_verified=next((n for n in verdict.not_verified
                                                   if (n.flow, n.viewport) == (flow, vp)), None)))
    return sections


def _detail_items(f: Finding) -> list[tuple[str, str, bool]]:
    """(name, value, is_block) of a finding's details, for display; ``key`` is internal."""
    items: list[tuple[str, str, bool]] = []
    for k, v in f.details.items():
        if k == "key" or v is None or v == "":
            continue
        if k == "stack":
            items.append((k, clip(v, MAX_STACK), True))
        elif k in ("server_log", "output_tail", "response_body"):   # guest/app text, bounded
            items.append((k, clip(v, MAX_LOG), True))
        elif isinstance(v, dict):
            items.append((k, clip(", ".join(f"{a}={b}" for a, b in v.items()), MAX_DETAIL), False))
        elif isinstance(v, list):
            items.append((k, clip("×".join(str(x) for x in v) if k.startswith("size") else
                                  ", ".join(str(x) for x in v), MAX_DETAIL), False))
        elif isinstance(v, float):
            items.append((k, f"{v:.6g}", False))
        else:
            items.append((k, clip(v, MAX_DETAIL), False))
    return items


def render_html(verdict: Verdict, captures: dict[str, list[Capture]], out: ArtifactDir, *,
                title: str, meta: dict[str, str]) -> str:
    """The report page as a string (see :func:`render_report`)."""
    sections = _sections(verdict, captures, out)
    anchors = {(s.flow, s.viewport): s.anchor for s in sections}
    traces = [(side, cap.flow, cap.viewport, name)
              for side in ("base", "head", "head2") for cap in captures.get(side, [])
              if (name := _exists(out, cap.trace))]
    flaky_links = [(fl, [n for n in fl.evidence if _exists(out, n)]) for fl in verdict.flaky]
    template = environment().get_template("report.html.j2")
    return template.render(
        verdict=verdict, title=title, meta=sorted(meta.items()), css=_css(),
        status_label=STATUS_LABEL.get(verdict.status, verdict.status),
        sections=sections, anchors=anchors, traces=traces, flaky_links=flaky_links,
        detail_items=_detail_items, max_rows=MAX_ROWS,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        errors=[f for f in verdict.findings if f.is_error],
        causes=_causes(verdict), js=_js(), csp=report_csp(meta=True),
    )


def _causes(verdict: Verdict) -> list[Group]:
    return shared_causes([f.model_dump(mode="json") for f in verdict.findings])


def render_report(verdict: Verdict, captures: dict[str, list[Capture]], out: ArtifactDir, *,
                  title: str, meta: dict[str, str]) -> Path:
    """Write ``out/index.html`` and return its path. ``captures`` maps a side (``base``,
    ``head``, ``head2``) to its captures; their artifacts are expected in ``out``."""
    out.ensure()
    page = out.root / "index.html"
    page.write_text(render_html(verdict, captures, out, title=title, meta=meta), encoding="utf-8")
    return page
