"""Every flow × viewport starts from the same deployed state; a failure carries the app's log.

:class:`ServerState` is what the pipeline hands :meth:`diffie.browser.BrowserRunner.run_all`
as its :class:`~diffie.browser.runner.FlowHooks`, one per leased VM (repo mode):

- after the deploy, :meth:`ServerState.checkpoint` snapshots the running VM (memory and disk,
  :meth:`Machine.checkpoint`) and notes where the guest's journal ends;
- before each flow × viewport, if any flow has run since the last checkpoint or revert and the
  flow does not opt out (``reset: false``), it reverts the VM to that snapshot, sets the guest
  clock to the run's instant again (a revert brings back the snapshot's clock) and checks that
  every service of the app answers on its forwarded port: what one flow wrote (a sign-out, an order, a
  registered user) is gone before the next one starts. The noise-floor render (head2) goes
  through the same hook, so it sees head's deployed state too;
- after a flow whose step failed or whose request to the app failed (HTTP >= 500 or no answer),
  before any revert, it reads the app's services' journal lines written since the snapshot
  into ``Capture.server_log`` (bounded, secrets masked: :mod:`diffie.sandbox.journal`).

URL mode has no VM and no hooks: there, flows share the server and see what earlier ones wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from urllib.parse import urlsplit

from diffie.capture import Capture
from diffie.errors import DeployError, SandboxError
from diffie.sandbox.base import Machine
from diffie.sandbox.deploy import wait_ready
from diffie.sandbox.journal import journal_cursor, read_journal
from diffie.spec import Flow

READY_AFTER_RESET_S = 30.0


def app_failures(capture: Capture, app_urls: str | Sequence[str]) -> bool:
    """Whether the app's log explains something in ``capture``: a failed step, or a request to
    one of the app's own (service) origins that got HTTP >= 500 or no answer (blocked
    requests never left)."""
    if capture.failed_step() is not None:
        return True
    apps = {_origin(u) for u in ([app_urls] if isinstance(app_urls, str) else app_urls)}
    return any(not r.blocked and _origin(r.url) in apps and (r.failure or (r.status or 0) >= 500)
               for r in capture.requests)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class ServerState:
    """The checkpoint of one deployed VM and the per-flow reverts to it (see the module doc)."""

    def __init__(self, vm: Machine, clock: datetime, *, units: Sequence[str],
                 say: Callable[[str], None], label: str = "",
                 ready_after_reset_s: float = READY_AFTER_RESET_S) -> None:
        self.vm = vm
        self.ready_after_reset_s = ready_after_reset_s      # per service
        self.clock = clock
        self.units = list(units)
        self.say = say
        self.label = label
        self.app_urls: list[str] = []             # every service's URL
        self.ready_urls: list[str] = []           # every service's readiness URL
        self.cursor: str | None = None       # the journal's end at the checkpoint
        self.dirty = False                   # a flow ran since the checkpoint or the last revert
        self.resets: list[float] = []        # seconds of each revert (clock and app check included)
        self.checkpoint_s: float | None = None

    def set_clock(self) -> None:
        self.vm.set_clock(self.clock)

    def checkpoint(self, app_urls: Sequence[str], ready_urls: Sequence[str]) -> None:
        """Snapshot the deployed VM; the flows start from here. ``app_urls``: each service's
        URL; ``ready_urls``: each one's readiness URL (checked after every revert)."""
        if not ready_urls:
            raise SandboxError("a checkpoint needs the app's readiness URL(s)")
        start = time.monotonic()
        self.app_urls, self.ready_urls = list(app_urls), list(ready_urls)
        self.cursor = journal_cursor(self.vm)
        self.vm.checkpoint()
        self.set_clock()          # the first flow starts at the run's instant, like the others
        self.checkpoint_s = time.monotonic() - start
        self.dirty = False
        self.say(f"{self.label}checkpoint of the deployed VM taken in {self.checkpoint_s:.2f} s")

    def reset(self) -> float:
        """Revert to the checkpoint, set the clock, check every service answers; the seconds
        taken."""
        if not self.ready_urls:
            raise SandboxError("reset before the checkpoint of the deployed VM")
        start = time.monotonic()
        self.vm.reset()
        self.set_clock()
        try:
            for url in self.ready_urls:
                wait_ready(url, self.ready_after_reset_s, poll_s=0.05)
        except DeployError as exc:
            raise SandboxError(f"the app did not answer after the VM was reverted to its "
                               f"deployed state: {exc}") from exc
        took = time.monotonic() - start
        self.resets.append(took)
        self.dirty = False
        return took

    # --- FlowHooks ------------------------------------------------------------------------

    def before_flow(self, flow: Flow, viewport: str) -> None:
        if self.ready_urls and self.dirty and flow.reset:
            took = self.reset()
            self.say(f"{self.label}VM reverted to the deployed state for {flow.name} @ "
                     f"{viewport} in {took:.2f} s")
        self.dirty = True

    def after_flow(self, flow: Flow, viewport: str, capture: Capture) -> None:
        if not self.app_urls or not app_failures(capture, self.app_urls):
            return
        capture.server_log = read_journal(self.vm, self.units, after=self.cursor)
        self.say(f"{self.label}{flow.name} @ {viewport} failed: kept "
                 f"{capture.server_log.count(chr(10)) + 1} line(s) of the app's journal")
