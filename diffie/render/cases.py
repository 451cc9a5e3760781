"""One test case per flow×viewport: the unit JUnit and CTRF report on."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from diffie.capture import Capture
from diffie.verdict import Finding, Flaky, NotVerified, Verdict

_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def clean(text: object, limit: int = 4000) -> str:
    """Text safe for XML and JSON consumers: no control characters, no lone surrogates,
    bounded."""
    t = "" if text is None else str(text)
    t = t.encode("utf-8", "replace").decode("utf-8")
    t = _XML_BAD.sub("\ufffd", t)
    return t if len(t) <= limit else t[: limit - 1] + "…"


@dataclass
class Case:
    flow: str
    viewport: str
    base: Capture | None = None
    head: Capture | None = None
    findings: list[Finding] = field(default_factory=list)
    flaky: list[Flaky] = field(default_factory=list)
    not_verified: NotVerified | None = None     # stopped at the same step on both sides

    @property
    def name(self) -> str:
        return f"{self.flow} [{self.viewport}]"

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.is_error]

    @property
    def changes(self) -> list[Finding]:
        return [f for f in self.findings if not f.is_error and not f.pre_existing]

    @property
    def duration_ms(self) -> float:
        return self.head.duration_ms if self.head else 0.0

    @property
    def infra_error(self) -> str | None:
        return next((c.error for c in (self.head, self.base) if c is not None and c.error), None)


def cases(verdict: Verdict, captures: dict[str, list[Capture]]) -> tuple[list[Case], list[Finding]]:
    """Test cases in head order (then base-only ones, then findings-only ones), and the
    findings tied to no flow (``deploy_error``, ...)."""
    by_key: dict[tuple[str, str], Case] = {}
    for side in ("head", "base"):
        for cap in captures.get(side, []):
            case = by_key.setdefault((cap.flow, cap.viewport), Case(cap.flow, cap.viewport))
            if side == "head":
                case.head = cap
            else:
                case.base = cap
    loose: list[Finding] = []
    for f in verdict.findings:
        if f.flow is None or f.viewport is None:
            loose.append(f)
            continue
        by_key.setdefault((f.flow, f.viewport), Case(f.flow, f.viewport)).findings.append(f)
    for fl in verdict.flaky:
        by_key.setdefault((fl.flow, fl.viewport), Case(fl.flow, fl.viewport)).flaky.append(fl)
    for nv in verdict.not_verified:
        by_key.setdefault((nv.flow, nv.viewport), Case(nv.flow, nv.viewport)).not_verified = nv
    return list(by_key.values()), loose


def finding_text(f: Finding) -> str:
    """A finding as plain text: message, details, regions, evidence."""
    lines = [f"[{f.kind}{' pre-existing' if f.pre_existing else ''}] {f.message}"]
    for k, v in f.details.items():
        if k != "key" and v not in (None, ""):
            lines.append(f"  {k}: {v}")
    for i, r in enumerate(f.regions, 1):
        names = "; ".join(f"{e.get('selector', '')} {e.get('text', '')!r}" for e in r.elements)
        lines.append(f"  region {i}: {r.width}x{r.height} at ({r.x},{r.y}), {r.pixels} px {names}")
    if f.evidence:
        lines.append("  evidence: " + ", ".join(f.evidence))
    return "\n".join(lines)
