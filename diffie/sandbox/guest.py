"""The QEMU guest agent protocol: exec with bounded output, file upload, clock. No libvirt here.

:class:`GuestAgent` speaks through one callable, ``call(command, arguments, timeout_s)``, that
returns the command's ``return`` value (``libvirt.py`` supplies it; unit tests fake it).
"""

from __future__ import annotations

import base64
import io
import math
import secrets
import tarfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from diffie.errors import SandboxError
from diffie.sandbox.base import MAX_OUTPUT, ExecResult
from diffie.sandbox.recipe import DEFAULT_EXCLUDES, iter_source_files

AgentCall = Callable[[str, dict[str, Any] | None, float], Any]

BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}
CHUNK = 512 * 1024                # bytes per guest-file-write
# ``cwd`` support (the agent has none before QEMU 8): a shell that changes directory, then execs.
_CD = 'cd "$1" || exit 125; shift; exec "$@"'


def _decode(data: str | None) -> str:
    if not data:
        return ""
    raw = base64.b64decode(data)
    return raw[-MAX_OUTPUT:].decode("utf-8", errors="replace")


class GuestAgent:
    def __init__(self, call: AgentCall) -> None:
        self._call = call

    def call(self, command: str, arguments: dict[str, Any] | None = None,
             timeout_s: float = 30.0) -> Any:
        return self._call(command, arguments, timeout_s)

    def wait(self, timeout_s: float = 60.0) -> float:
        """Ping until the agent answers; returns the seconds it took."""
        start = time.monotonic()
        last: Exception | None = None
        while time.monotonic() - start < timeout_s:
            try:
                self.call("guest-ping", None, 5)
                return time.monotonic() - start
            except SandboxError as exc:
                last = exc
                time.sleep(0.1)
        raise SandboxError(f"the guest agent did not answer within {timeout_s:.0f} s: {last}")

    def exec(self, argv: Sequence[str], *, timeout: float = 120.0,
             env: dict[str, str] | None = None, cwd: str | None = None) -> ExecResult:
        if not argv:
            raise SandboxError("exec needs a command")
        full_env = dict(BASE_ENV)
        full_env.update(env or {})
        limit = max(1, math.ceil(timeout))
        # A guest-side timeout (the agent cannot kill a command); the agent keeps at most 16 MB
        # of each output stream and we keep the last MAX_OUTPUT bytes. Each extra process costs
        # ~0.1 s under TCG, so this is all the wrapping there is.
        args = ["-k", "5", str(limit), *(["/bin/sh", "-c", _CD, "diffie-cd", cwd] if cwd else []),
                *argv]
        start = time.monotonic()
        ret = self.call("guest-exec", {
            "path": "/usr/bin/timeout", "arg": args, "capture-output": True,
            "env": [f"{k}={v}" for k, v in full_env.items()],
        }, 30)
        pid = int(ret["pid"])
        deadline = start + limit + 30      # the guest-side timeout fires first
        delay = 0.02
        while True:
            status = self.call("guest-exec-status", {"pid": pid}, 30)
            if status.get("exited"):
                break
            if time.monotonic() > deadline:
                raise SandboxError(f"guest command did not finish in {limit + 30} s: {list(argv)}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        duration = time.monotonic() - start
        code = status.get("exitcode")
        if code is None:
            code = 128 + int(status.get("signal", 0) or 0)
        stderr = _decode(status.get("err-data"))
        if code in (124, 137) and duration >= limit:
            stderr += f"\n[diffie] timed out after {limit} s"
        return ExecResult(argv=tuple(argv), exit_code=int(code), stdout=_decode(status.get("out-data")),
                          stderr=stderr, duration_s=duration)

    def write_file(self, path: str, data: io.BufferedIOBase | bytes, *, mode: str = "w") -> int:
        """Write ``data`` to a guest file in chunks; returns the byte count."""
        stream: io.BufferedIOBase = io.BytesIO(data) if isinstance(data, bytes) else data
        handle = self.call("guest-file-open", {"path": path, "mode": mode}, 30)
        total = 0
        try:
            while chunk := stream.read(CHUNK):
                self.call("guest-file-write", {"handle": handle,
                                               "buf-b64": base64.b64encode(chunk).decode()}, 60)
                total += len(chunk)
        finally:
            self.call("guest-file-close", {"handle": handle}, 30)
        return total

    def put_tree(self, src: Path, dest: str, *, timeout: float = 300.0) -> None:
        """Copy a host directory into the guest, replacing ``dest`` (root-owned files)."""
        if not src.is_dir():
            raise SandboxError(f"put_tree: {src} is not a directory")
        if not dest.startswith("/") or dest.rstrip("/") in ("", "/usr", "/etc", "/var", "/bin"):
            raise SandboxError(f"put_tree: refusing destination {dest!r}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=3) as tar:
            for rel, path in iter_source_files(src, list(DEFAULT_EXCLUDES)):
                info = tar.gettarinfo(str(path), arcname=str(rel))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                if info.isfile():
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
        buf.seek(0)
        tmp = f"/tmp/diffie-put-{secrets.token_hex(6)}.tar.gz"
        self.write_file(tmp, buf)
        script = ('rm -rf "$1" && mkdir -p "$1" && tar -xzf "$2" -C "$1" --no-same-owner; '
                  'rc=$?; rm -f "$2"; exit $rc')
        res = self.exec(["/bin/sh", "-c", script, "put-tree", dest, tmp], timeout=timeout)
        if not res.ok:
            raise SandboxError(f"put_tree: unpacking into {dest} failed ({res.exit_code}): {res.tail(500)}")

    def start_set_time(self, instant: datetime, timeout_s: float = 60.0) -> None:
        """Start setting the clock without waiting for it: doubles as the agent's readiness
        check (retried until the agent answers). Later commands run after it has started."""
        argv = ["/bin/date", "-u", "-s", f"@{instant.timestamp():.6f}"]
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.call("guest-exec", {"path": argv[0], "arg": argv[1:]}, 5)
                return
            except SandboxError as exc:
                if time.monotonic() > deadline:
                    raise SandboxError(f"the guest agent did not answer within {timeout_s:.0f} s: "
                                       f"{exc}") from exc
                time.sleep(0.05)

    def set_time(self, instant: datetime) -> None:
        """Set the guest's system clock to ``instant`` (timezone-aware).

        ``date -s`` rather than the agent's ``guest-set-time``, which also runs ``hwclock -w``
        and so waits for the RTC's next second (0.5-2.5 s under TCG). The RTC only matters at
        a reboot, which a disposable guest never has.
        """
        if instant.tzinfo is None:
            raise SandboxError("set_clock needs a timezone-aware datetime")
        res = self.exec(["/bin/date", "-u", "-s", f"@{instant.timestamp():.6f}"], timeout=30)
        if not res.ok:
            raise SandboxError(f"cannot set the guest clock: {res.tail(300)}")
