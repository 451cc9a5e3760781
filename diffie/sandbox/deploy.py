"""Deploy a source tree into a leased machine, per the project's ``sandbox`` spec section.

``deploy(machine, source, spec)`` copies ``source`` to ``spec.source_dir`` in the guest, runs
``spec.deploy`` commands there one by one (``/bin/sh -c`` in ``source_dir``, output captured and
bounded), then waits until ``spec.ready_path`` answers over the forwarded port; it returns the
app's host-reachable base URL (:func:`deploy_detailed` also returns the timings). A failing command or an app
that never gets ready raises :class:`DeployError` with the command, its exit code and the tail
of its output: the pipeline turns that into a ``deploy_error`` finding.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from diffie.errors import DeployError, SandboxError
from diffie.sandbox.base import ExecResult, Machine
from diffie.spec import SandboxSpec

TAIL_CHARS = 4000


@dataclass
class DeployResult:
    base_url: str                     # host-reachable URL of the app
    commands: list[ExecResult] = field(default_factory=list)
    put_tree_s: float = 0.0
    commands_s: float = 0.0
    ready_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.put_tree_s + self.commands_s + self.ready_s


def wait_ready(url: str, timeout_s: float, *, poll_s: float = 0.2,
               get: Callable[[str], httpx.Response] | None = None) -> float:
    """Poll ``url`` until it answers 2xx/3xx; returns the seconds waited. Raises DeployError."""
    fetch = get or (lambda u: httpx.get(u, timeout=min(10.0, timeout_s)))
    start = time.monotonic()
    last = "no answer"
    while True:
        try:
            resp = fetch(url)
            if resp.status_code < 400:
                return time.monotonic() - start
            last = f"HTTP {resp.status_code}: {resp.text[:500]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() - start > timeout_s:
            raise DeployError(f"the app did not become ready at {url} within {timeout_s:.0f} s ({last})",
                              command=f"GET {url}", exit_code=None, output_tail=last[-TAIL_CHARS:])
        time.sleep(poll_s)


def deploy(machine: Machine, source: Path, spec: SandboxSpec,
           progress: Callable[[str], None] | None = None) -> str:
    """Copy ``source`` in, run the deploy commands, wait for readiness; returns the app's URL."""
    return deploy_detailed(machine, source, spec, progress).base_url


def deploy_detailed(machine: Machine, source: Path, spec: SandboxSpec,
                    progress: Callable[[str], None] | None = None) -> DeployResult:
    """:func:`deploy`, returning the commands' results and each phase's duration."""
    say = progress or (lambda _line: None)
    result = DeployResult(base_url=machine.url(spec.port))
    t = time.monotonic()
    try:
        machine.put_tree(source, spec.source_dir)
    except SandboxError as exc:
        raise DeployError(f"copying the source into the VM failed: {exc}",
                          command=f"put_tree {spec.source_dir}", output_tail=str(exc)[-TAIL_CHARS:]) from exc
    result.put_tree_s = time.monotonic() - t
    say(f"source copied to {spec.source_dir} in {result.put_tree_s:.1f} s")
    deadline = time.monotonic() + spec.deploy_timeout_s
    t = time.monotonic()
    for command in spec.deploy:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeployError(f"deploy ran out of time ({spec.deploy_timeout_s:.0f} s) before: {command}",
                              command=command, exit_code=None, output_tail="")
        res = machine.exec(["/bin/sh", "-c", command], timeout=remaining, cwd=spec.source_dir)
        result.commands.append(res)
        say(f"deploy: {command} → exit {res.exit_code} in {res.duration_s:.1f} s")
        if not res.ok:
            raise DeployError(f"deploy command failed with exit code {res.exit_code}: {command}",
                              command=command, exit_code=res.exit_code,
                              output_tail=res.tail(TAIL_CHARS))
    result.commands_s = time.monotonic() - t
    result.ready_s = wait_ready(result.base_url + spec.ready_path, spec.ready_timeout_s)
    say(f"ready at {result.base_url}{spec.ready_path} after {result.ready_s:.1f} s")
    return result
