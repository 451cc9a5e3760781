"""What the worker's job needs from the world, as protocols, and :class:`JobDeps` that holds them.

The job (:func:`diffie.pipeline.run_change`) names no implementation: the composition root
(:mod:`diffie.composition`) builds a :class:`JobDeps` from real things (Chromium, libvirt, git,
GitHub), tests and benchmarks from fakes (:mod:`diffie.fakes`) or a mix. Nothing here decides
what "the real thing" is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from diffie.artifacts import ArtifactDir
from diffie.capture import Capture, Side
from diffie.config import Settings
from diffie.errors import RunError
from diffie.run_images import ImageBuilder
from diffie.run_store import ChangeInput
from diffie.sandbox.base import Machine, Sandbox
from diffie.services import ServiceUrls
from diffie.spec import Flow, SandboxSpec, Spec, Viewport


class FlowHooks(Protocol):
    """Called around each run of a flow at one viewport (the job's
    :class:`diffie.server_state.ServerState`). Exceptions propagate: a VM that cannot be reset
    is an infrastructure failure, not a finding."""

    def before_flow(self, flow: Flow, viewport: str) -> None:
        """Before the flow runs (and before a second attempt of it)."""
        ...

    def after_flow(self, flow: Flow, viewport: str, capture: Capture) -> None:
        """After its last attempt, before the next flow: may add to ``capture``."""
        ...


class FlowRunner(Protocol):
    """A browser that runs one flow × viewport and records what happened
    (:class:`diffie.browser.BrowserRunner`). ``base_url``: the side's app URL, or the URL of
    each of its services (:class:`~diffie.services.ServiceUrls`)."""

    def run_pair(self, spec: Spec, flow: Flow, viewport_name: str, viewport: Viewport,
                 base_url: str | ServiceUrls, side: Side, out: ArtifactDir, *, clock: datetime,
                 hooks: FlowHooks | None = None,
                 say: Callable[[str], None] | None = None) -> Capture: ...


class SourceProvider(Protocol):
    """Materialises a change's base and head trees."""

    def materialise(self, change: ChangeInput, base_dest: Path,
                    head_dest: Path) -> tuple[str, str]:
        """Export both revisions into the (empty) directories; returns (base sha, head sha)."""
        ...


class Deployer(Protocol):
    """Copies a tree into a machine, runs the deploy commands, waits until the app answers;
    returns the host-reachable URL of each of the app's services
    (:func:`diffie.sandbox.deploy.deploy`), or of its default service alone. Raises
    :class:`diffie.errors.DeployError` when the tree does not deploy."""

    def __call__(self, machine: Machine, source: Path, spec: SandboxSpec,
                 progress: Callable[[str], None] | None = None, *,
                 units: Sequence[str] | None = None) -> str | ServiceUrls: ...


class NoSandbox:
    """The sandbox of a process that cannot run VMs (no database to lease slots from)."""

    def __init__(self, why: str) -> None:
        self.why = why

    def lease(self, image: str, *, run_id: str = "", wait_s: float | None = None,
              on_slot: Callable[[], None] | None = None) -> AbstractContextManager[Machine]:
        raise RunError(self.why)


@dataclass(frozen=True)
class JobDeps:
    settings: Settings
    # A browser for one side's flows, opened and closed by the job on its own thread.
    browser: Callable[[], AbstractContextManager[FlowRunner]]
    sandbox: Sandbox
    deploy: Deployer
    # Change mode ("repo", "github", ...) -> where its base and head come from.
    # The GitHub App registers "github" at start-up (the dict is shared with the AppContext).
    sources: dict[str, SourceProvider] = field(default_factory=dict)
    # Builds a repository's own image recipe (sandbox.recipe) on demand; None: this worker
    # cannot (a run that needs one ends error saying so).
    build_image: ImageBuilder | None = None

    def source_for(self, mode: str) -> SourceProvider:
        try:
            return self.sources[mode]
        except KeyError:
            raise RunError(f"no source for {mode!r} changes in this worker (known: "
                           f"{', '.join(sorted(self.sources)) or 'none'})") from None
