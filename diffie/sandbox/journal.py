"""The app's side of a failure: its services' lines from the guest's systemd journal.

:func:`service_units` says which units a deploy runs (the image's enabled units and those its
deploy commands start); :func:`read_journal` reads their lines from a machine, bounded
(:data:`MAX_LINES` lines, :data:`MAX_CHARS` characters: the newest) and with secrets masked
(:mod:`diffie.redact`, including the values of the units' secret-named ``Environment=``
variables). What comes back is the guest's text: untrusted, to be escaped where it is shown
and never used to name a file or a path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from diffie.errors import SandboxError
from diffie.redact import mask_secrets, secret_values
from diffie.sandbox.base import Machine

MAX_LINES = 200
MAX_CHARS = 16_000
MAX_UNITS = 8
# A unit name as systemd spells it; never an option (no leading "-"), nothing a shell reads.
_UNIT = re.compile(r"^[A-Za-z0-9@_:][A-Za-z0-9@._:-]{0,199}$")
_CURSOR = re.compile(r"^[A-Za-z0-9=;]{1,400}$")
_SUFFIXES = (".service", ".socket", ".timer", ".target", ".path", ".mount")
_START = re.compile(
    r"\bsystemctl\s+(?:-\S+\s+)*(?:start|restart|try-restart|reload-or-restart|reload|"
    r"enable\s+--now)\s+([^;&|<>()`$\n]+)")


def units_in(command: str) -> list[str]:
    """The units a shell command starts or restarts with ``systemctl`` (``systemctl restart
    shop`` → ``shop.service``); nothing for other commands."""
    found: list[str] = []
    for match in _START.finditer(command):
        for word in match.group(1).split():
            if word.startswith("-") or not _UNIT.match(word):
                continue
            unit = word if word.endswith(_SUFFIXES) else f"{word}.service"
            if unit not in found:
                found.append(unit)
    return found


def service_units(deploy: Sequence[str], enabled: Iterable[str] = ()) -> list[str]:
    """The units whose log is the app's: the image's enabled ``.service`` units and those the
    deploy commands start, in that order, at most :data:`MAX_UNITS`."""
    units: list[str] = []
    for unit in [*enabled, *(u for command in deploy for u in units_in(command))]:
        if unit.endswith(".service") and _UNIT.match(unit) and unit not in units:
            units.append(unit)
    return units[:MAX_UNITS]


def bound_text(text: str, *, lines: int = MAX_LINES, chars: int = MAX_CHARS) -> str:
    """The newest ``lines`` lines of ``text``, then its newest ``chars`` characters (whole lines),
    saying how much was left out."""
    rows = text.rstrip("\n").splitlines()
    dropped = max(0, len(rows) - lines)
    rows = rows[dropped:]
    kept: list[str] = []
    size = 0
    for row in reversed(rows):
        row = row[:chars]
        if size + len(row) + 1 > chars:
            break
        kept.append(row)
        size += len(row) + 1
    dropped += len(rows) - len(kept)
    body = "\n".join(reversed(kept))
    return (f"[diffie: {dropped} earlier line(s) not shown]\n" if dropped else "") + body


def unit_secrets(machine: Machine, units: Sequence[str], *, timeout: float = 30.0) -> list[str]:
    """The values of the units' secret-named ``Environment=`` variables (to mask them)."""
    if not units:
        return []
    res = machine.exec(["systemctl", "show", "--property=Environment", "--value", "--", *units],
                       timeout=timeout)
    if not res.ok:
        return []
    return [v for line in res.stdout.splitlines() for v in secret_values(line)]


def journal_cursor(machine: Machine, *, timeout: float = 30.0) -> str | None:
    """The cursor of the journal's newest entry (None if it cannot be read). Lines written
    later come after it, also once the guest has been reverted to a checkpoint taken after it:
    the guest's clock, set back to the run's instant at each revert, cannot order them."""
    try:
        res = machine.exec(["journalctl", "--no-pager", "--quiet", "--lines=1", "--output=cat",
                            "--show-cursor"], timeout=timeout)
    except SandboxError:
        return None
    for line in reversed(res.stdout.splitlines()):
        if line.startswith("-- cursor: "):
            cursor = line.removeprefix("-- cursor: ").strip()
            return cursor if _CURSOR.match(cursor) else None
    return None


def read_journal(machine: Machine, units: Sequence[str], *, after: str | None = None,
                 lines: int = MAX_LINES, chars: int = MAX_CHARS, timeout: float = 30.0) -> str:
    """The newest journal lines of ``units`` (the whole journal without units) after the cursor
    ``after`` (see :func:`journal_cursor`): bounded, secrets masked. Never raises for the
    guest: a journal that cannot be read gives a line saying why (it is evidence, not the
    verdict)."""
    argv = ["journalctl", "--no-pager", "--quiet", "--output=short-iso", f"--lines={lines}"]
    if after is not None:
        if not _CURSOR.match(after):
            raise ValueError("not a journal cursor")
        argv.append(f"--after-cursor={after}")
    for unit in units:
        if not _UNIT.match(unit):
            raise ValueError(f"not a unit name: {unit!r}")
        argv.append(f"--unit={unit}")
    try:
        res = machine.exec(argv, timeout=timeout)
        known = unit_secrets(machine, units, timeout=timeout) if res.ok else []
    except SandboxError as exc:
        return f"[diffie: the journal could not be read: {str(exc)[:300]}]"
    if not res.ok:
        return f"[diffie: journalctl exited {res.exit_code}: {mask_secrets(res.tail(300))}]"
    text = bound_text(mask_secrets(res.stdout, known), lines=lines, chars=chars)
    return text or "[diffie: the journal has no lines of these units then]"
