"""Browsing one side of a change: every flow × viewport in spec order (:func:`browse_side`),
both sides of URL mode with two browsers at once (:func:`browse_sides`), and the noise floor,
head rendered again where that can change the verdict (:func:`noise_floor`)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from diffie.artifacts import ArtifactDir
from diffie.capture import Capture, Side
from diffie.compare.findings import Key, noise_floor_pairs
from diffie.config import Settings
from diffie.control import FlowDone, ProgressLog
from diffie.deps import FlowRunner, JobDeps
from diffie.server_state import ServerState
from diffie.services import ServiceUrls
from diffie.spec import Spec


class Abandoned(Exception):
    """A side stopped because the other one failed: the other side's error is the run's."""


def wants_noise_floor(settings: Settings, spec: Spec) -> bool:
    return settings.noise_floor and spec.noise_floor and any(
        step.action == "screenshot" for flow in spec.flows for step in flow.steps)


def with_prerequisites(spec: Spec, pairs: set[Key]) -> set[Key]:
    """``pairs`` and, for each ``reset: false`` flow among them, the flow × viewport runs before
    it back to the one that reverted the VM: what it sees on the server is what they left."""
    order = [(flow, name) for flow in spec.flows for name, _ in spec.flow_viewports(flow)]
    wanted = set(pairs)
    for i, (flow, name) in enumerate(order):
        if (flow.name, name) not in pairs or flow.reset:
            continue
        for before, before_name in reversed(order[:i]):
            wanted.add((before.name, before_name))
            if before.reset:
                break
    return wanted


def noise_floor(browser: FlowRunner, settings: Settings, spec: Spec, url: str | ServiceUrls,
                base: list[Capture], head: list[Capture], out: ArtifactDir, clock: datetime,
                say: ProgressLog, state: ServerState | None = None,
                stop: threading.Event | None = None) -> list[Capture] | None:
    """Head rendered again, for the flow × viewport pairs where that can change the verdict
    (a screenshot differs from base's, a step failed): what differs between head's two renders
    is noise, a step that passes the second time is flaky. A pair identical to base needs none."""
    pairs = noise_floor_pairs(base, head, out, max_pixels=settings.max_screenshot_pixels,
                              threshold=spec.visual_threshold)
    if not pairs:
        say(f"noise floor: head matches base in all {len(head)} flow × viewport runs; "
            "no second render")
        return None
    pairs = with_prerequisites(spec, pairs)
    say(f"noise floor: head again for {len(pairs)} of {len(head)} flow × viewport runs "
        "(a screenshot differs from base's, or a step failed)")
    return browse_side(browser, spec, url, "head2", out, clock, say, state, only=pairs,
                       stop=stop)


def browse_sides(deps: JobDeps, spec: Spec, sides: list[tuple[Side, str]], out: ArtifactDir,
                 clock: datetime, say: ProgressLog) -> dict[Side, list[Capture]]:
    """Browse each (side, URL). With ``settings.parallel_sides``, two browsers at once (base and
    head side by side): the waits of one overlap the work of the other, and both sides see the
    same conditions."""
    lanes: list[list[tuple[Side, str]]] = [sides] if not deps.settings.parallel_sides else \
        [sides[0::2], sides[1::2]]
    lanes = [lane for lane in lanes if lane]
    results: dict[Side, list[Capture]] = {}

    def lane_work(lane: list[tuple[Side, str]]) -> None:
        with deps.browser() as browser:
            for side, url in lane:
                results[side] = browse_side(browser, spec, url, side, out, clock, say)

    if len(lanes) == 1:
        lane_work(lanes[0])
        return results
    with ThreadPoolExecutor(len(lanes), thread_name_prefix="diffie-browse") as pool:
        futures = [pool.submit(lane_work, lane) for lane in lanes]
        for future in futures:
            future.result()
    return results


def browse_side(browser: FlowRunner, spec: Spec, url: str | ServiceUrls, side: Side,
                out: ArtifactDir, clock: datetime, say: ProgressLog, state: ServerState | None = None,
                only: set[Key] | None = None, stop: threading.Event | None = None) -> list[Capture]:
    """Every flow × viewport of ``spec`` (or those in ``only``) on one side, in spec order; a
    phase after each. ``stop`` set (the other side failed): :class:`Abandoned` before the next."""
    pairs = [(flow, name, viewport) for flow in spec.flows
             for name, viewport in spec.flow_viewports(flow)
             if only is None or (flow.name, name) in only]
    say.phase(f"browse {side} 0/{len(pairs)}")
    captures: list[Capture] = []
    for flow, name, viewport in pairs:
        if stop is not None and stop.is_set():
            raise Abandoned(f"{side}: stopped, the other side failed")
        say(f"{side}: flow {flow.name} @ {name}")
        capture = browser.run_pair(spec, flow, name, viewport, url, side, out, clock=clock,
                                   hooks=state, say=say)
        captures.append(capture)
        say(FlowDone.of(capture).line())
        say.phase(f"browse {side} {len(captures)}/{len(pairs)}")
    return captures
