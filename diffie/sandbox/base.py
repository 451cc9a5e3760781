"""The sandbox seam. ``libvirt.py`` is the real implementation; nothing else imports libvirt."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

MAX_OUTPUT = 64_000   # bytes of a guest command's output kept (the tail)


@dataclass(frozen=True)
class ExecResult:
    argv: tuple[str, ...]
    exit_code: int
    stdout: str        # bounded to MAX_OUTPUT (tail), decoded with errors="replace"
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, chars: int = 4000) -> str:
        text = (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr)
        return text[-chars:]


class Machine(Protocol):
    """A running, disposable guest."""

    name: str

    def exec(self, argv: Sequence[str], *, timeout: float = 120.0,
             env: dict[str, str] | None = None, cwd: str | None = None) -> ExecResult: ...

    def put_tree(self, src: Path, dest: str) -> None:
        """Copy a host directory into the guest (replacing ``dest``)."""
        ...

    def url(self, guest_port: int) -> str:
        """Host-reachable base URL (``http://127.0.0.1:PORT``) of a guest port."""
        ...

    def set_clock(self, instant: datetime) -> None: ...

    def checkpoint(self) -> None:
        """Remember the guest as it is now, memory and disk: :meth:`reset` returns to it.
        A later checkpoint replaces the earlier one; the lease's exit removes it."""
        ...

    def reset(self) -> None:
        """Return the guest to the last :meth:`checkpoint` (SandboxError without one). Its
        processes, files and connections are as they were then; so is its clock: set it again."""
        ...


class Sandbox(Protocol):
    def lease(self, image: str, *, run_id: str = "", wait_s: float | None = None,
              on_slot: Callable[[], None] | None = None) -> AbstractContextManager[Machine]:
        """Restore ``image``'s golden snapshot on enter; destroy the VM and overlay on exit.
        ``wait_s``: how long to wait for a free VM slot (None: the sandbox's default; 0: only
        a slot free now), then :class:`~diffie.errors.NoFreeSlot`. ``on_slot``: called once
        the slot is held, before the restore."""
        ...
