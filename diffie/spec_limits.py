"""How big a ``.diffie.yml`` may be: flows, steps, viewports, screenshots, timeouts, deploy.

A spec comes from the change under test (untrusted): without caps a 5,000-flow spec of 600 s
steps holds a worker for days. Each cap is a ``DIFFIE_*`` setting (:class:`SpecLimits` mirrors
them; :meth:`SpecLimits.from_settings` reads them) and is checked when the spec is validated,
so an oversized spec is a 422 at submission or an ``error`` run naming the line, the field, the
limit and the setting::

    .diffie.yml:12 (flows): 5000 flows, more than the limit of 50 (DIFFIE_MAX_FLOWS)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from diffie.config import Settings
    from diffie.spec import Spec

# The defaults, shared with diffie.config.Settings (one place says what they are).
MAX_SPEC_BYTES = 256_000
MAX_FLOWS = 50
MAX_STEPS_PER_FLOW = 100
MAX_VIEWPORTS = 8
MAX_SCREENSHOTS = 200
MAX_STEP_TIMEOUT_MS = 120_000
MAX_BROWSE_TIME_S = 1800
MAX_DEPLOY_COMMANDS = 30
MAX_DEPLOY_TIMEOUT_S = 900
MAX_READY_TIMEOUT_S = 300
# Not spec caps, but limits of the same kind (defaults of settings used elsewhere).
# 1280x6250 (a full page), 2560x3125; a fully different pair of this size diffs in ~0.4 GB
MAX_SCREENSHOT_PIXELS = 8_000_000
MAX_REPO_FILES = 20_000
MAX_REPO_BYTES = 200_000_000


@dataclass(frozen=True)
class SpecLimits:
    max_spec_bytes: int = MAX_SPEC_BYTES
    max_flows: int = MAX_FLOWS
    max_steps_per_flow: int = MAX_STEPS_PER_FLOW
    max_viewports: int = MAX_VIEWPORTS
    max_screenshots: int = MAX_SCREENSHOTS
    max_step_timeout_ms: int = MAX_STEP_TIMEOUT_MS
    max_browse_time_s: int = MAX_BROWSE_TIME_S
    max_deploy_commands: int = MAX_DEPLOY_COMMANDS
    max_deploy_timeout_s: float = MAX_DEPLOY_TIMEOUT_S
    max_ready_timeout_s: float = MAX_READY_TIMEOUT_S
    max_screenshot_pixels: int = MAX_SCREENSHOT_PIXELS

    @classmethod
    def from_settings(cls, settings: Settings) -> SpecLimits:
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


def setting_name(field: str) -> str:
    return "DIFFIE_" + field.upper()


@dataclass(frozen=True)
class Excess:
    """The first limit a spec goes past: what, where in the document, and which setting."""

    message: str
    path: tuple[Any, ...]          # in the YAML document, for the line number
    field: str                     # as the error names it (``flows[2].steps``)


def _over(what: str, value: float, limit_field: str, limits: SpecLimits, unit: str = "") -> str:
    limit = getattr(limits, limit_field)
    return (f"{what} {value:g}{unit}, more than the limit of {limit:g}{unit} "
            f"({setting_name(limit_field)})")


def _child(node: Any, key: str) -> Any:
    """The value node of ``key`` in a mapping node (None if absent or not a mapping)."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value_node
    return None


def node_excess(root: yaml.Node, limits: SpecLimits) -> Excess | None:
    """The counting caps (flows, steps, viewports, deploy commands), checked on the YAML node
    tree before any object is built from it: an oversized spec is refused in milliseconds."""
    flows = _child(root, "flows")
    if isinstance(flows, yaml.SequenceNode):
        if len(flows.value) > limits.max_flows:
            return Excess(f"{len(flows.value)} flows, more than the limit of {limits.max_flows} "
                          f"({setting_name('max_flows')})", ("flows",), "flows")
        for fi, flow in enumerate(flows.value):
            steps = _child(flow, "steps")
            if isinstance(steps, yaml.SequenceNode) and len(steps.value) > limits.max_steps_per_flow:
                name = _child(flow, "name")
                label = repr(name.value) if isinstance(name, yaml.ScalarNode) else f"#{fi}"
                return Excess(f"flow {label} has {len(steps.value)} steps, more than the limit of "
                              f"{limits.max_steps_per_flow} "
                              f"({setting_name('max_steps_per_flow')})",
                              ("flows", fi, "steps"), f"flows[{fi}].steps")
    viewports = _child(root, "viewports")
    if isinstance(viewports, yaml.MappingNode) and len(viewports.value) > limits.max_viewports:
        return Excess(f"{len(viewports.value)} viewports, more than the limit of "
                      f"{limits.max_viewports} ({setting_name('max_viewports')})",
                      ("viewports",), "viewports")
    for stage in COMMAND_STAGES:
        node = _child(_child(root, "sandbox"), stage)
        if isinstance(node, yaml.SequenceNode) and len(node.value) > limits.max_deploy_commands:
            return _too_many_commands(len(node.value), stage, limits)
    return None


COMMAND_STAGES = ("build", "migrate", "deploy")


def _too_many_commands(count: int, stage: str, limits: SpecLimits) -> Excess:
    return Excess(f"{count} {stage} commands, more than the limit of "
                  f"{limits.max_deploy_commands} ({setting_name('max_deploy_commands')})",
                  ("sandbox", stage), f"sandbox.{stage}")


def data_excess(data: Any, limits: SpecLimits) -> Excess | None:
    """:func:`node_excess` for a spec given as plain data (the API's JSON ``spec`` object):
    checked before it is turned into YAML text."""
    if not isinstance(data, dict):
        return None
    flows = data.get("flows")
    if isinstance(flows, list):
        if len(flows) > limits.max_flows:
            return Excess(f"{len(flows)} flows, more than the limit of {limits.max_flows} "
                          f"({setting_name('max_flows')})", ("flows",), "flows")
        for fi, flow in enumerate(flows):
            steps = flow.get("steps") if isinstance(flow, dict) else None
            if isinstance(steps, list) and len(steps) > limits.max_steps_per_flow:
                return Excess(f"flow #{fi} has {len(steps)} steps, more than the limit of "
                              f"{limits.max_steps_per_flow} "
                              f"({setting_name('max_steps_per_flow')})",
                              ("flows", fi, "steps"), f"flows[{fi}].steps")
    viewports = data.get("viewports")
    if isinstance(viewports, dict) and len(viewports) > limits.max_viewports:
        return Excess(f"{len(viewports)} viewports, more than the limit of "
                      f"{limits.max_viewports} ({setting_name('max_viewports')})",
                      ("viewports",), "viewports")
    sandbox = data.get("sandbox")
    for stage in COMMAND_STAGES:
        commands = sandbox.get(stage) if isinstance(sandbox, dict) else None
        if isinstance(commands, list) and len(commands) > limits.max_deploy_commands:
            return _too_many_commands(len(commands), stage, limits)
    return None


def first_excess(spec: Spec, limits: SpecLimits) -> Excess | None:
    """The first cap ``spec`` exceeds, or None."""
    if len(spec.flows) > limits.max_flows:
        return Excess(f"{len(spec.flows)} flows, more than the limit of {limits.max_flows} "
                      f"({setting_name('max_flows')})", ("flows",), "flows")
    if len(spec.viewports) > limits.max_viewports:
        return Excess(f"{len(spec.viewports)} viewports, more than the limit of "
                      f"{limits.max_viewports} ({setting_name('max_viewports')})",
                      ("viewports",), "viewports")
    for name, vp in spec.viewports.items():
        if vp.width * vp.height > limits.max_screenshot_pixels:
            return Excess(f"viewport {name!r} is {vp.width}x{vp.height} = {vp.width * vp.height:,}"
                          f" pixels, more than the screenshot limit of "
                          f"{limits.max_screenshot_pixels:,} "
                          f"({setting_name('max_screenshot_pixels')})",
                          ("viewports", name), f"viewports.{name}")
    if "timeout_ms" in spec.model_fields_set and spec.timeout_ms > limits.max_step_timeout_ms:
        return Excess(_over("timeout_ms is", spec.timeout_ms, "max_step_timeout_ms", limits,
                            " ms"), ("timeout_ms",), "timeout_ms")
    screenshots = 0
    browse_ms = 0
    for fi, flow in enumerate(spec.flows):
        if len(flow.steps) > limits.max_steps_per_flow:
            return Excess(f"flow {flow.name!r} has {len(flow.steps)} steps, more than the limit "
                          f"of {limits.max_steps_per_flow} ({setting_name('max_steps_per_flow')})",
                          ("flows", fi, "steps"), f"flows[{fi}].steps")
        for si, step in enumerate(flow.steps):
            if step.timeout_ms is not None and step.timeout_ms > limits.max_step_timeout_ms:
                return Excess(_over("timeout_ms is", step.timeout_ms, "max_step_timeout_ms",
                                    limits, " ms"), ("flows", fi, "steps", si),
                              f"flows[{fi}].steps[{si}].timeout_ms")
        n_viewports = len(spec.flow_viewports(flow))
        screenshots += n_viewports * sum(1 for s in flow.steps if s.action == "screenshot")
        if screenshots > limits.max_screenshots:
            return Excess(f"the flows take at least {screenshots} screenshots (screenshot steps "
                          f"× viewports), more than the limit of {limits.max_screenshots} "
                          f"({setting_name('max_screenshots')})", ("flows", fi), f"flows[{fi}]")
        browse_ms += n_viewports * sum(s.timeout_ms or spec.timeout_ms for s in flow.steps)
        if browse_ms > limits.max_browse_time_s * 1000:
            return Excess(f"the flows could take {browse_ms / 1000:g} s to browse one side "
                          f"(the sum of their step timeouts × viewports), more than the limit of "
                          f"{limits.max_browse_time_s} s ({setting_name('max_browse_time_s')})",
                          ("flows", fi), f"flows[{fi}]")
    sandbox = spec.sandbox
    if sandbox is not None:
        for stage in COMMAND_STAGES:
            commands = getattr(sandbox, stage)
            if len(commands) > limits.max_deploy_commands:
                return _too_many_commands(len(commands), stage, limits)
        if sandbox.deploy_timeout_s > limits.max_deploy_timeout_s:
            return Excess(_over("deploy_timeout_s is", sandbox.deploy_timeout_s,
                                "max_deploy_timeout_s", limits, " s"),
                          ("sandbox", "deploy_timeout_s"), "sandbox.deploy_timeout_s")
        if sandbox.ready_timeout_s > limits.max_ready_timeout_s:
            return Excess(_over("ready_timeout_s is", sandbox.ready_timeout_s,
                                "max_ready_timeout_s", limits, " s"),
                          ("sandbox", "ready_timeout_s"), "sandbox.ready_timeout_s")
        for i, service in enumerate(sandbox.services or []):
            if (service.ready_timeout_s or 0) > limits.max_ready_timeout_s:
                return Excess(_over("ready_timeout_s is", service.ready_timeout_s or 0,
                                    "max_ready_timeout_s", limits, " s"),
                              ("sandbox", "services", i, "ready_timeout_s"),
                              f"sandbox.services[{i}].ready_timeout_s")
    return None
