"""The guest-agent protocol against a fake agent: exec, output bounds, uploads, clock."""

from __future__ import annotations

import base64
import io
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from diffie.errors import SandboxError
from diffie.sandbox.base import MAX_OUTPUT
from diffie.sandbox.guest import CHUNK, GuestAgent


class FakeAgent:
    def __init__(self, *, exitcode: int = 0, out: bytes = b"", err: bytes = b"",
                 polls: int = 2) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.exitcode, self.out, self.err, self.polls = exitcode, out, err, polls
        self.files: dict[int, bytearray] = {}
        self.paths: dict[str, bytes] = {}
        self._open: dict[int, str] = {}

    def __call__(self, command: str, args_or_none: dict[str, Any] | None, timeout: float) -> Any:
        args: dict[str, Any] = args_or_none or {}
        self.calls.append((command, args))
        if command == "guest-exec":
            return {"pid": 42}
        if command == "guest-exec-status":
            self.polls -= 1
            if self.polls > 0:
                return {"exited": False}
            return {"exited": True, "exitcode": self.exitcode,
                    "out-data": base64.b64encode(self.out).decode(),
                    "err-data": base64.b64encode(self.err).decode()}
        if command == "guest-file-open":
            handle = len(self._open) + 1
            self._open[handle] = args["path"]
            self.files[handle] = bytearray()
            return handle
        if command == "guest-file-write":
            self.files[args["handle"]] += base64.b64decode(args["buf-b64"])
            return {"count": 0}
        if command == "guest-file-close":
            self.paths[self._open[args["handle"]]] = bytes(self.files[args["handle"]])
            return {}
        if command == "guest-ping":
            return {}
        raise AssertionError(command)


def test_exec_runs_under_a_guest_timeout_and_decodes_output() -> None:
    fake = FakeAgent(exitcode=3, out=b"hello\n", err=b"oops\n")
    res = GuestAgent(fake).exec(["psql", "-c", "select 1"], timeout=7.2, env={"A": "1"})
    assert (res.exit_code, res.stdout, res.stderr) == (3, "hello\n", "oops\n")
    assert not res.ok and res.argv == ("psql", "-c", "select 1")
    cmd, args = fake.calls[0]
    assert cmd == "guest-exec" and args["path"] == "/usr/bin/timeout"
    assert args["arg"] == ["-k", "5", "8", "psql", "-c", "select 1"]
    assert "A=1" in args["env"] and any(e.startswith("PATH=") for e in args["env"])
    assert args["capture-output"] is True


def test_exec_cwd_goes_through_a_shell() -> None:
    fake = FakeAgent()
    GuestAgent(fake).exec(["ls"], cwd="/srv/app")
    arg = fake.calls[0][1]["arg"]
    assert arg[3:5] == ["/bin/sh", "-c"] and arg[-2:] == ["/srv/app", "ls"]


def test_output_is_bounded_to_its_tail() -> None:
    big = b"x" * (MAX_OUTPUT + 1000) + b"END"
    res = GuestAgent(FakeAgent(out=big)).exec(["yes"])
    assert len(res.stdout) == MAX_OUTPUT and res.stdout.endswith("END")


def test_write_file_in_chunks() -> None:
    fake = FakeAgent()
    data = bytes(range(256)) * (CHUNK // 256 * 2 + 3)
    assert GuestAgent(fake).write_file("/tmp/x", data) == len(data)
    assert fake.paths["/tmp/x"] == data
    assert sum(1 for c, _ in fake.calls if c == "guest-file-write") == 3


def test_put_tree_uploads_a_root_owned_tarball_and_unpacks_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    (src / "app" / "main.py").write_text("print(1)\n")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref\n")
    fake = FakeAgent()
    GuestAgent(fake).put_tree(src, "/srv/app")
    (path, blob), = fake.paths.items()
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"app/main.py"}
    assert members["app/main.py"].uid == 0
    unpack = [a for c, a in fake.calls if c == "guest-exec"][-1]["arg"]
    assert unpack[-2:] == ["/srv/app", path]


def test_put_tree_refuses_system_directories(tmp_path: Path) -> None:
    with pytest.raises(SandboxError):
        GuestAgent(FakeAgent()).put_tree(tmp_path, "/usr")
    with pytest.raises(SandboxError):
        GuestAgent(FakeAgent()).put_tree(tmp_path / "missing", "/srv/x")


def test_set_time_uses_the_exact_instant() -> None:
    fake = FakeAgent()
    GuestAgent(fake).set_time(datetime(2030, 1, 2, 3, 4, 5, 500000, tzinfo=UTC))
    arg = fake.calls[0][1]["arg"]
    assert arg[-4:-1] == ["/bin/date", "-u", "-s"]
    assert arg[-1] == "@1893553445.500000"
    with pytest.raises(SandboxError):
        GuestAgent(fake).set_time(datetime(2030, 1, 1))
