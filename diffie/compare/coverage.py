"""How much of the spec was verified: steps run per side, and what stopped on both sides.

For every flow × viewport the spec asks for: the number of steps it has, how many ran on base
and on head, and whether every step was compared. A flow that stopped at the same step on both
sides (the step fails on base too, so the change did not cause it) is a
:class:`~diffie.verdict.NotVerified` entry, not a finding: the steps from there on were verified
on neither side, and the verdict's summary says so.
"""

from __future__ import annotations

from diffie.capture import Capture
from diffie.compare.logs import clip, evidence_of, failed_on_both
from diffie.spec import Spec
from diffie.verdict import Coverage, NotVerified

Key = tuple[str, str]


def coverage_of(spec: Spec, base: list[Capture], head: list[Capture]
                ) -> tuple[list[Coverage], list[NotVerified]]:
    """Coverage per flow × viewport of ``spec`` (spec order) and the not-verified entries."""
    base_by: dict[Key, Capture] = {(c.flow, c.viewport): c for c in base}
    head_by: dict[Key, Capture] = {(c.flow, c.viewport): c for c in head}
    coverage: list[Coverage] = []
    not_verified: list[NotVerified] = []
    for flow in spec.flows:
        total = len(flow.steps)
        for viewport, _ in spec.flow_viewports(flow):
            b, h = base_by.get((flow.name, viewport)), head_by.get((flow.name, viewport))
            complete = (b is not None and h is not None and _ran_all(b, total)
                        and _ran_all(h, total))
            coverage.append(Coverage(
                flow=flow.name, viewport=viewport, steps=total,
                base_ran=None if b is None else len(b.steps),
                head_ran=None if h is None else len(h.steps), verified=complete))
            both = failed_on_both(b, h) if h is not None else None
            if both is not None and h is not None:
                not_verified.append(_entry(h, both[0].error, both[1].error, both[1].index,
                                           both[1].description, total, both[1].line))
    return coverage, not_verified


def _ran_all(cap: Capture, total: int) -> bool:
    return len(cap.steps) >= total and all(s.ok for s in cap.steps) and cap.error is None


def _entry(head: Capture, base_error: str | None, head_error: str | None, step: int,
           description: str, total: int, line: int | None) -> NotVerified:
    left = max(total - step - 1, 0)
    message = (f"{head.flow}@{head.viewport} stopped at step {step} ({clip(description, 120)}) "
               f"on both sides: {clip(head_error, 300) or 'no reason given'}")
    if left:
        message += f"; the {left} step(s) after it ran on neither side"
    return NotVerified(
        flow=head.flow, viewport=head.viewport, step=step, step_description=description,
        steps_not_run=left, message=message, evidence=evidence_of(head, step),
        details={"base_error": clip(base_error, 1000), "head_error": clip(head_error, 1000),
                 "spec_line": line,
                 **({"server_log": head.server_log} if head.server_log else {})})
