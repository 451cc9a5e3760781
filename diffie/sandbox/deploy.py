"""Deploy a source tree into a leased machine, per the project's ``sandbox`` spec section.

``deploy(machine, source, spec)`` copies ``source`` to ``spec.source_dir`` in the guest (which
it replaces, except the ``keep`` paths: the guest's state there survives; ``owner`` then owns
the tree), runs the ``build``, ``migrate`` and ``deploy`` commands there one by one
(``/bin/sh -c`` in ``source_dir``, output captured and bounded; each migration's output is also
a progress line the run's report keeps; ``DIFFIE_SERVICE_URL_<NAME>`` in their environment is
the URL the browser uses for each service), then waits until every service's ``ready_path``
answers over its forwarded port; it returns the services' host-reachable URLs
(:func:`deploy_detailed` also returns the timings). A failing command or a service that never
gets ready raises :class:`DeployError` with the command, its exit code and the tail of its
output: the pipeline turns that into a ``deploy_error`` finding.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

import httpx

from diffie.errors import DeployError, SandboxError
from diffie.sandbox.base import ExecResult, Machine
from diffie.sandbox.journal import bound_text, read_journal, service_units, units_in
from diffie.sandbox.recipe import DEFAULT_EXCLUDES, excluded
from diffie.services import Service, ServiceUrls
from diffie.spec import SandboxSpec, ready_path_problem
from diffie.spec_limits import MAX_REPO_BYTES, MAX_REPO_FILES

TAIL_CHARS = 4000
JOURNAL_LINES = 60                 # journal lines of the app's units kept in a DeployError
JOURNAL_LINES_IN_MESSAGE = 8       # ... and the last few in its message
JOURNAL_CHARS_IN_MESSAGE = 1500
BODY_CHARS = 200       # characters of a not-ready answer's body quoted in the deploy error


MIGRATE_OUTPUT = "migrate output: "   # progress lines the run keeps in its report (pipeline)
MIGRATE_CHARS = 1500

# Around put_tree, which replaces source_dir: the spec's `keep` paths are moved aside and put
# back (the guest's state wins over the revision's copy), and the tree is chowned to `owner`.
# Arguments: source_dir, a scratch directory, owner (or ""), then the kept paths.
KEEP_ASIDE = """set -e
src=$1; stash=$2; shift 3
rm -rf "$stash"; mkdir -p "$stash"
for p in "$@"; do
  if [ -e "$src/$p" ] || [ -L "$src/$p" ]; then
    mkdir -p "$stash/$(dirname "$p")"; mv "$src/$p" "$stash/$p"
  fi
done"""
PUT_BACK = """set -e
src=$1; stash=$2; owner=$3; shift 3
if [ -n "$owner" ]; then chown -R -h "$owner" "$src"; fi
for p in "$@"; do
  if [ -e "$stash/$p" ] || [ -L "$stash/$p" ]; then
    rm -rf "$src/$p"; mkdir -p "$(dirname "$src/$p")"; mv "$stash/$p" "$src/$p"
  fi
done
rm -rf "$stash"
"""
STASH = "/var/lib/diffie/deploy-keep"


def _guest_step(machine: Machine, script: str, spec: SandboxSpec, what: str) -> None:
    if not spec.keep and not (spec.owner and script is PUT_BACK):
        return
    res = machine.exec(["/bin/sh", "-c", script, "keep", spec.source_dir, STASH,
                        spec.owner or "", *spec.keep], timeout=120)
    if not res.ok:
        raise DeployError(f"{what} failed with exit code {res.exit_code} (sandbox.keep "
                          f"{spec.keep}, owner {spec.owner!r})", command=what,
                          exit_code=res.exit_code, output_tail=res.tail(TAIL_CHARS))


@dataclass
class DeployResult:
    base_url: str                     # host-reachable URL of the app (its default service)
    service_urls: ServiceUrls         # ... and of each of its services, by name
    commands: list[ExecResult] = field(default_factory=list)
    put_tree_s: float = 0.0
    commands_s: float = 0.0
    ready_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.put_tree_s + self.commands_s + self.ready_s


def ready_url(base_url: str, path: str) -> str:
    """The readiness URL: ``base_url``'s scheme and host with ``path`` (and its query) — built
    with a URL parser, never by concatenation, so a path cannot name another host."""
    problem = ready_path_problem(path)
    if problem:
        raise DeployError(problem, command=f"GET {path[:200]!r}")
    base = urlsplit(base_url)
    target = urlsplit(path)
    if target.scheme or target.netloc or not target.path.startswith("/"):
        raise DeployError("ready_path must be a path on the app", command=f"GET {path[:200]!r}")
    url = urlunsplit((base.scheme, base.netloc, target.path, target.query, ""))
    if httpx.URL(url).host != httpx.URL(base_url).host or urlsplit(url).netloc != base.netloc:
        raise DeployError("ready_path must be a path on the app", command=f"GET {path[:200]!r}")
    return url


def _body_snippet(resp: httpx.Response, chars: int = BODY_CHARS) -> str:
    """The start of a response body for an error message: bounded, control characters and
    quotes escaped (it is the app's text, not ours)."""
    try:
        text = resp.content[:chars * 4].decode("utf-8", errors="replace")[:chars]
    except httpx.HTTPError:
        return ""
    return ascii(text) if text else ""


def _answered_by(resp: httpx.Response) -> httpx.URL | None:
    try:
        return resp.request.url
    except RuntimeError:            # a response built without a request (tests)
        return None


def with_journal(error: DeployError, machine: Machine, units: Sequence[str]) -> DeployError:
    """``error`` with the units' journal tail appended to its output tail, and its last lines
    to its message: why the service did not start (``error`` itself without units)."""
    if not units:
        return error
    journal = read_journal(machine, units, lines=JOURNAL_LINES, chars=TAIL_CHARS)
    label = ", ".join(units)
    last = bound_text(journal, lines=JOURNAL_LINES_IN_MESSAGE, chars=JOURNAL_CHARS_IN_MESSAGE)
    message = f"{error}; the journal of {label} ends:\n{last}"
    tail = (error.output_tail + "\n" if error.output_tail else "") + f"--- journal of {label} ---\n{journal}"
    return DeployError(message, command=error.command, exit_code=error.exit_code,
                       output_tail=tail[-(TAIL_CHARS * 2):])


def check_tree_size(source: Path, *, max_files: int, max_bytes: int) -> tuple[int, int]:
    """Count what :meth:`Machine.put_tree` would copy (files, bytes; the same exclusions);
    raises DeployError naming the limit and its setting as soon as one is passed."""
    files = size = 0
    for root, dirs, names in os.walk(source):
        rel_root = PurePosixPath(Path(root).relative_to(source).as_posix())
        dirs[:] = [d for d in dirs if not excluded(rel_root / d, list(DEFAULT_EXCLUDES))]
        for name in names:
            if excluded(rel_root / name, list(DEFAULT_EXCLUDES)):
                continue
            files += 1
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
            if files > max_files:
                raise DeployError(f"the revision has more than {max_files:,} files to copy into the "
                                  "VM, the limit (DIFFIE_MAX_REPO_FILES)",
                                  command="copy the source into the VM")
            if size > max_bytes:
                raise DeployError(f"the revision has more than {max_bytes:,} bytes to copy into the "
                                  "VM, the limit (DIFFIE_MAX_REPO_BYTES)",
                                  command="copy the source into the VM")
    return files, size


def wait_ready(url: str, timeout_s: float, *, poll_s: float = 0.2,
               get: Callable[[str], httpx.Response] | None = None,
               what: str = "the app") -> float:
    """Poll ``url`` until it answers 2xx/3xx (redirects are not followed); returns the seconds
    waited. Raises DeployError (``what`` did not become ready ...)."""
    fetch = get or (lambda u: httpx.get(u, timeout=min(10.0, timeout_s), follow_redirects=False))
    expected = httpx.URL(url)
    start = time.monotonic()
    last = "no answer"
    while True:
        try:
            resp = fetch(url)
            if resp.status_code < 400:
                return time.monotonic() - start
            last = f"HTTP {resp.status_code}"
            got = _answered_by(resp) or expected
            if (got.host, got.port) == (expected.host, expected.port):
                snippet = _body_snippet(resp)
                last += f": {snippet}" if snippet else ""
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"[:BODY_CHARS]
        if time.monotonic() - start > timeout_s:
            raise DeployError(f"{what} did not become ready at {url} within {timeout_s:.0f} s ({last})",
                              command=f"GET {url}", exit_code=None, output_tail=last[-TAIL_CHARS:])
        time.sleep(poll_s)


def service_urls(machine: Machine, spec: SandboxSpec) -> ServiceUrls:
    """The host-reachable URL of each of the app's services (``machine.url`` of its port).
    A port the VM cannot forward is a DeployError saying to list it in the recipe's ports."""
    urls: dict[str, str] = {}
    for service in spec.effective_services:
        try:
            urls[service.name] = machine.url(service.port)
        except SandboxError as exc:
            raise DeployError(
                f"{_label(spec, service)}: the VM does not forward guest port {service.port} "
                f"({exc}); add {service.port} to the ports: of the image's recipe "
                f"({spec.image_label})", command=f"forward guest port {service.port}",
                output_tail=str(exc)[-TAIL_CHARS:]) from exc
    return ServiceUrls(urls)


def _label(spec: SandboxSpec, service: Service) -> str:
    """How a message names a service: ``service 'api' (guest port 9000, ready_path /health)``
    (the shorthand's one service: ``the app (...)``)."""
    who = "the app" if spec.services is None else f"service {service.name!r}"
    return f"{who} (guest port {service.port}, ready_path {service.ready_path})"


def ready_urls(urls: ServiceUrls, spec: SandboxSpec) -> list[str]:
    """The readiness URL of each of ``spec``'s services that ``urls`` has."""
    return [ready_url(urls[s.name], s.ready_path) for s in spec.effective_services
            if s.name in urls]


def deploy(machine: Machine, source: Path, spec: SandboxSpec,
           progress: Callable[[str], None] | None = None, *, max_files: int | None = None,
           max_bytes: int | None = None, units: Sequence[str] | None = None) -> ServiceUrls:
    """Copy ``source`` in, run the deploy commands, wait for readiness; returns the URL of each
    of the app's services (``.base_url``: the default one's).
    Given ``max_files`` or ``max_bytes``, a larger tree is not copied (DeployError; the
    pipeline checks its settings' limits with :func:`check_tree_size` before deploying).
    ``units``: the app's systemd units (default: those the deploy commands start), whose
    journal tail a DeployError carries when a ``systemctl`` command fails or the app never gets
    ready (``ModuleNotFoundError: ...`` says more than "not ready")."""
    return deploy_detailed(machine, source, spec, progress, max_files=max_files,
                           max_bytes=max_bytes, units=units).service_urls


def deploy_detailed(machine: Machine, source: Path, spec: SandboxSpec,
                    progress: Callable[[str], None] | None = None, *,
                    max_files: int | None = None, max_bytes: int | None = None,
                    units: Sequence[str] | None = None) -> DeployResult:
    """:func:`deploy`, returning the commands' results and each phase's duration."""
    say = progress or (lambda _line: None)
    urls = service_urls(machine, spec)
    result = DeployResult(base_url=urls.base_url, service_urls=urls)
    t = time.monotonic()
    if max_files is not None or max_bytes is not None:
        check_tree_size(source, max_files=max_files or MAX_REPO_FILES,
                        max_bytes=max_bytes or MAX_REPO_BYTES)
    _guest_step(machine, KEEP_ASIDE, spec, "keeping the state paths aside")
    try:
        machine.put_tree(source, spec.source_dir)
    except SandboxError as exc:
        raise DeployError(f"copying the source into the VM failed: {exc}",
                          command=f"put_tree {spec.source_dir}", output_tail=str(exc)[-TAIL_CHARS:]) from exc
    _guest_step(machine, PUT_BACK, spec, "putting the state paths back")
    result.put_tree_s = time.monotonic() - t
    kept = f" (kept: {', '.join(spec.keep)})" if spec.keep else ""
    owner = f", owned by {spec.owner}" if spec.owner else ""
    say(f"source copied to {spec.source_dir} in {result.put_tree_s:.1f} s{kept}{owner}")
    deadline = time.monotonic() + spec.deploy_timeout_s
    t = time.monotonic()
    for stage, command in spec.commands:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeployError(f"deploy ran out of time ({spec.deploy_timeout_s:.0f} s) before "
                              f"the {stage} command: {command}",
                              command=command, exit_code=None, output_tail="")
        res = machine.exec(["/bin/sh", "-c", command], timeout=remaining, cwd=spec.source_dir,
                           env=urls.env())
        result.commands.append(res)
        say(f"{stage}: {command} → exit {res.exit_code} in {res.duration_s:.1f} s")
        if stage == "migrate":
            say(f"{MIGRATE_OUTPUT}{command} → exit {res.exit_code}\n{res.tail(MIGRATE_CHARS)}")
        if not res.ok:
            error = DeployError(f"{stage} command failed with exit code {res.exit_code}: "
                                f"{command}", command=command, exit_code=res.exit_code,
                                output_tail=res.tail(TAIL_CHARS))
            raise with_journal(error, machine, units_in(command))
    result.commands_s = time.monotonic() - t
    for service in spec.effective_services:          # each with its own timeout, in turn
        url = ready_url(urls[service.name], service.ready_path)
        try:
            waited = wait_ready(url, service.ready_timeout_s, poll_s=0.05,
                                what=_label(spec, service))
        except DeployError as exc:
            raise with_journal(exc, machine, service_units(spec.deploy) if units is None
                               else units) from None
        result.ready_s += waited
        who = "" if spec.services is None else f"{service.name} "
        say(f"{who}ready at {url} after {waited:.1f} s")
    return result
