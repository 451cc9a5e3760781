"""Uploaded work for repo mode: the head is the base revision plus a patch, or a commit from a
git bundle, sent with the request (an agent's uncommitted work on another machine).

The upload is kept as bytes with the change (the database), never as a path on the API's
disk, and applied by the worker in its own checkout:

- ``diff``: ``git diff --binary`` output, applied with ``git apply`` to a copy of the base
  tree (git rejects paths outside the tree and writes through symbolic links); the head is
  labelled ``diff:<sha256 prefix>``;
- ``bundle``: ``git bundle create`` output whose commits sit on top of what the repository
  has; fetched into a scratch repository that borrows the repository's objects (the user's
  repository gains no refs or objects), and its head commit exported.

Every failure is a :class:`~diffie.errors.SourceError` (at the worker: the run ends ``error``
with it) or an :class:`~diffie.errors.InputError` naming the request's field. The worker's
source (:func:`diffie.git_source.head_from_upload`) checks the trees out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from diffie import gitrun
from diffie.errors import InputError, SourceError

Format = Literal["diff", "bundle"]
FORMATS: tuple[Format, ...] = ("diff", "bundle")
BUNDLE_REF = "refs/diffie/head"
BUNDLE_SIGNATURES = (b"# v2 git bundle\n", b"# v3 git bundle\n")
ERROR_CHARS = 1500


@dataclass(frozen=True)
class Upload:
    format: Format
    data: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()[:12]

    @property
    def label(self) -> str:
        """The head's name until the worker knows better (``diff:…``, ``bundle:…``)."""
        return f"{self.format}:{self.digest}"


def from_request(*, patch: str | None, bundle: str | None, max_bytes: int) -> Upload | None:
    """The upload a request carries (``patch``: diff text; ``bundle``: base64 of a bundle),
    checked for size and shape; ``None`` when it carries none."""
    if patch is not None and bundle is not None:
        raise InputError("bundle", "send the work as a patch or as a bundle, not both")
    if patch is not None:
        return checked(Upload("diff", patch.encode("utf-8", errors="surrogateescape")),
                       max_bytes, field="patch")
    if bundle is not None:
        try:
            data = base64.b64decode(bundle, validate=True)
        except (binascii.Error, ValueError):
            raise InputError("bundle", "bundle is not base64 (send base64 of the file "
                             "`git bundle create` writes)") from None
        return checked(Upload("bundle", data), max_bytes, field="bundle")
    return None


def checked(upload: Upload, max_bytes: int, *, field: str) -> Upload:
    if len(upload.data) > max_bytes:
        raise InputError(field, f"the {upload.format} is {len(upload.data)} bytes, more than "
                         f"the {max_bytes} this server takes (DIFFIE_MAX_UPLOAD_BYTES); commit "
                         "and push the work, or send a smaller change", code="too_large")
    if upload.format == "bundle" and not upload.data.startswith(BUNDLE_SIGNATURES):
        raise InputError(field, "not a git bundle (it should start with '# v2 git bundle'): "
                         "create one with `git bundle create FILE BASE..HEAD`")
    if upload.format == "diff":
        if not upload.data.strip():
            raise InputError(field, "the patch is empty: there is nothing to verify")
        if b"diff --git " not in upload.data and not upload.data.startswith(b"--- "):
            raise InputError(field, "not a diff (expected `git diff --binary` output)")
    return upload


def _run(args: list[str], cwd: Path, what: str) -> bytes:
    proc = gitrun.run(args, cwd=cwd, check=False,
                      env={"GIT_CEILING_DIRECTORIES": str(cwd.parent)})
    if proc.returncode != 0:
        tail = gitrun.stderr_tail(proc, limit=ERROR_CHARS) or f"git exited {proc.returncode}"
        raise SourceError(f"{what}: {tail}")
    return proc.stdout


def apply_diff(data: bytes, tree: Path) -> None:
    """Apply a ``diff`` upload to ``tree`` (a checkout of the base)."""
    patch = tree.parent / f".{tree.name}.patch"
    patch.write_bytes(data)
    try:
        _run(["apply", "--whitespace=nowarn", "--", str(patch)], tree,
             "the patch does not apply to the base revision (make it with `git diff --binary "
             "BASE` against the same base)")
    finally:
        patch.unlink(missing_ok=True)


def unbundle(data: bytes, repo: Path, scratch: Path) -> str:
    """A ``bundle`` upload fetched into a new bare repository ``scratch`` that borrows
    ``repo``'s objects; returns the ref of its head there."""
    _run(["init", "--quiet", "--bare", str(scratch)], scratch.parent, "cannot set up the bundle")
    objects = _run(["rev-parse", "--path-format=absolute", "--git-path", "objects"], repo,
                   "cannot read the repository").decode().strip()
    (scratch / "objects" / "info" / "alternates").write_text(objects + "\n", encoding="utf-8")
    bundle = scratch / "upload.bundle"
    bundle.write_bytes(data)
    _run(["bundle", "verify", "--quiet", str(bundle)], scratch,
         "the bundle does not fit this repository (its base commits are missing: create it "
         "with `git bundle create FILE BASE..HEAD` where BASE is in the repository)")
    heads = [line.split(" ", 1) for line in
             _run(["bundle", "list-heads", str(bundle)], scratch, "cannot read the bundle")
             .decode("utf-8", errors="replace").splitlines() if " " in line]
    if not heads:
        raise SourceError("the bundle has no refs: create it with a revision range ending in "
                          "a branch or HEAD")
    ref = next((r for _, r in heads if r == "HEAD"), heads[0][1])
    _run(["fetch", "--quiet", "--no-tags", str(bundle), f"{ref}:{BUNDLE_REF}"], scratch,
         "cannot fetch the bundle")
    return BUNDLE_REF
