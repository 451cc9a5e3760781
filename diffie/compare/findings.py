"""Base vs head, per flow and viewport: every finding of a run, and the flaky evidence.

Captures are matched by (flow, viewport). For each head capture: the log findings
(:mod:`diffie.compare.logs`) against the base capture, and the visual findings
(:mod:`diffie.compare.visual`) per screenshot present on both sides. A head capture with no
base counterpart is compared against an empty base (everything in it is new); a base capture
with no head counterpart gives nothing. A head capture's ``server_log`` (the app's journal
while the flow failed) goes into the details of its log findings.
"""

from __future__ import annotations

from diffie.artifacts import ArtifactDir
from diffie.capture import Capture
from diffie.compare.logs import log_findings
from diffie.compare.visual import PIXEL_THRESHOLD, screenshot_differs, visual_findings
from diffie.spec_limits import MAX_SCREENSHOT_PIXELS
from diffie.verdict import Finding, Flaky

Key = tuple[str, str]


def _by_key(captures: list[Capture] | None) -> dict[Key, Capture]:
    return {(c.flow, c.viewport): c for c in captures or []}


STEP_KINDS = ("step_failed", "assertion_failed")


def unconfirmed_steps(found: list[Finding], head2: Capture) -> tuple[list[Finding], list[Flaky]]:
    """Step findings of head that head's second render (the same code, from the same deployed
    state) does not repeat: its same step passed. A change that breaks a step breaks it every
    time; one that failed once (a guest too slow to answer in time, a race in the test) is
    listed as flaky, with the failure and its evidence, and does not fail the run."""
    keep: list[Finding] = []
    flaky: list[Flaky] = []
    for f in found:
        if f.kind in STEP_KINDS and not f.pre_existing and f.step is not None:
            again = next((st for st in head2.steps if st.index == f.step), None)
            if again is not None and again.ok:
                flaky.append(Flaky(flow=head2.flow, viewport=head2.viewport, step=f.step,
                                   reason=f.message, evidence=list(f.evidence)))
                continue
        keep.append(f)
    return keep, flaky


def needs_second_render(base: Capture | None, head: Capture, out: ArtifactDir, *,
                        masks_in_count: bool = False, max_pixels: int = MAX_SCREENSHOT_PIXELS,
                        threshold: float = PIXEL_THRESHOLD) -> bool:
    """Whether a second render of head (the noise floor) can change what is judged about this
    flow × viewport: a step of head failed (head2 tells a broken step from a flaky one), or a
    screenshot of head differs from base's (head2 measures the noise in it). When neither, the
    findings are the same with or without head2 (tests/unit/test_compare_findings.py)."""
    if not head.completed or head.error or any(not step.ok for step in head.steps):
        return True
    if base is None:
        return False
    base_shots = {s.name: s for s in base.screenshots}
    return any(screenshot_differs(base_shots[shot.name], shot, out, masks_in_count=masks_in_count,
                                  max_pixels=max_pixels, threshold=threshold)
               for shot in head.screenshots if shot.name in base_shots)


def noise_floor_pairs(base: list[Capture], head: list[Capture], out: ArtifactDir, *,
                      max_pixels: int = MAX_SCREENSHOT_PIXELS,
                      threshold: float = PIXEL_THRESHOLD) -> set[Key]:
    """The (flow, viewport) pairs whose head is rendered a second time (see
    :func:`needs_second_render`)."""
    base_by = _by_key(base)
    return {(cap.flow, cap.viewport) for cap in head
            if needs_second_render(base_by.get((cap.flow, cap.viewport)), cap, out,
                                   max_pixels=max_pixels, threshold=threshold)}


def compare_runs(base: list[Capture], head: list[Capture], out: ArtifactDir, *,
                 head2: list[Capture] | None = None, masks_in_count: bool = False,
                 max_pixels: int = MAX_SCREENSHOT_PIXELS,
                 threshold: float = PIXEL_THRESHOLD) -> tuple[list[Finding], list[Flaky]]:
    """All findings (with stable ids, in head's flow×viewport order) and flaky evidence.

    ``head2`` is a second render of head (the noise floor); ``masks_in_count`` compares the
    pixels under mask boxes too (see :func:`diffie.compare.visual.compare_screenshot`).
    ``threshold`` is pixelmatch's per-pixel colour tolerance (0: every differing pixel counts).
    Diff images are written into ``out``. A screenshot of more than ``max_pixels`` pixels is
    not decoded: :class:`~diffie.errors.ImageError` (the run ends ``error``, saying so).
    """
    base_by = _by_key(base)
    head2_by = _by_key(head2)
    findings: list[Finding] = []
    flaky: list[Flaky] = []
    for cap in head:
        key = (cap.flow, cap.viewport)
        base_cap = base_by.get(key)
        found = log_findings(base_cap, cap)
        if key in head2_by:
            found, unconfirmed = unconfirmed_steps(found, head2_by[key])
            flaky.extend(unconfirmed)
        if cap.server_log:
            for f in found:
                if f.kind != "blocked_request":     # the app never saw a blocked request
                    f.details["server_log"] = cap.server_log
        findings.extend(found)
        if base_cap is not None:
            visual, noise = visual_findings(base_cap, cap, out, head2=head2_by.get(key),
                                            masks_in_count=masks_in_count,
                                            max_pixels=max_pixels, threshold=threshold)
            findings.extend(visual)
            flaky.extend(noise)
    seen: dict[str, int] = {}
    for f in findings:
        f.with_id()
        n = seen.get(f.id, 0)
        seen[f.id] = n + 1
        if n:                           # same kind/flow/viewport/step/key twice: keep ids unique
            f.id = f"{f.id}-{n + 1}"
    return findings, flaky
