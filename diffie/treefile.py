"""Read a file of a checked-out change without following symbolic links.

A change's tree is untrusted: a ``.diffie.yml`` committed as a link to ``/etc/shadow`` (or a
directory on the way to it linked to ``/``) must not make the worker read a host file. Every
component below the checkout's root is opened with ``O_NOFOLLOW`` relative to its parent's
descriptor, and the file must be a regular file.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from diffie.errors import RunError


class UnsafeTreePath(RunError):
    """A path in a change's tree is a symbolic link, not a regular file, or leaves the tree."""


def _refuse(rel: str, part: str, what: str, side: str) -> UnsafeTreePath:
    where = f"{rel}" if part == rel else f"{rel} (its component {part!r})"
    return UnsafeTreePath(
        f"{where} in the {side} revision is {what}: Diffie does not follow symbolic links or "
        "read special files in a change; commit the file itself")


def read_tree_file(root: Path, rel: str, *, max_bytes: int, side: str = "head") -> bytes | None:
    """The first ``max_bytes + 1`` bytes of ``root/rel`` (None when it does not exist); raises
    :class:`UnsafeTreePath` when any component is a symbolic link or the file is not regular."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise UnsafeTreePath(f"invalid path {rel!r}: it must be relative to the repository root "
                             "and stay inside it")
    fds: list[int] = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            flags |= os.O_NONBLOCK if last else os.O_DIRECTORY
            try:
                fd = os.open(part, flags, dir_fd=fds[-1])
            except FileNotFoundError:
                return None
            except OSError as exc:
                try:
                    st = os.stat(part, dir_fd=fds[-1], follow_symlinks=False)
                except OSError:
                    st = None
                if st is not None and stat.S_ISLNK(st.st_mode):
                    raise _refuse(rel, part, "a symbolic link", side) from None
                if exc.errno == errno.ENOTDIR:
                    return None
                raise UnsafeTreePath(f"cannot read {rel} in the {side} revision: "
                                     f"{exc.strerror}") from None
            fds.append(fd)
        if not stat.S_ISREG(os.fstat(fds[-1]).st_mode):
            raise _refuse(rel, rel, "not a regular file", side)
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fds[-1], min(1 << 16, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        for fd in fds:
            os.close(fd)
