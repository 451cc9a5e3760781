"""The guest's only way out: an allow-listed, caching package-registry proxy on the host.

A change that adds a dependency must install it at deploy time, but the guest has no network
(QEMU user-mode networking with ``restrict=on``: it cannot open a connection to anything).
The connections go the other way: while the deploy commands run, the host keeps a few idle TCP
connections *into* the guest (a ``hostfwd`` of a spare slot port to guest port 3140), and a
relay in the guest (``socat``, started as a transient unit) hands each one to an installer that
connects to ``127.0.0.1:3141`` in the guest (:class:`Tunnel`). What arrives on them is served
by this proxy, never forwarded as is. (QEMU's own ``guestfwd=...-cmd:`` would need QEMU to
spawn a process, which libvirt's seccomp sandbox forbids, and rightly so.) The relay is stopped
and the forward removed before the deployed state is checkpointed: the flows run with no way
out at all.

The proxy answers only ``GET``/``HEAD`` of paths under the registries the operator names
(``DIFFIE_PACKAGE_REGISTRIES``, default ``pypi,npm``), each mapped to a fixed upstream:

    /pypi/simple/<project>/      -> https://pypi.org/simple/<project>/
    /pypi/files/<path>           -> https://files.pythonhosted.org/<path>
    /npm/<package>               -> https://registry.npmjs.org/<package>

Nothing else is reachable: no other host, no CONNECT, no absolute URLs. Index pages have their
upstream URLs rewritten to the proxy's, so pip and npm fetch files through it as well (the
hashes they check are unchanged). Files (wheels, sdists, tarballs) are immutable and cached
forever in ``<image_cache_dir>/.packages/``; index pages are cached for
``DIFFIE_PACKAGE_INDEX_TTL_S`` and served stale when the upstream fails, so a warm install needs
no upstream at all. Deploy commands see ``PIP_INDEX_URL``, ``npm_config_registry`` and friends
(:func:`guest_env`), so ``pip install -r requirements.txt`` and ``npm ci`` just work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import select
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)

GUEST_LISTEN = 3141            # in the guest, on its loopback: where installers connect
GUEST_TUNNEL = 3140            # in the guest: where the host's pooled connections arrive
GUEST_BASE = f"http://127.0.0.1:{GUEST_LISTEN}"
RELAY_UNIT = "diffie-packages"
POOL_SIZE = 6
MAX_FILE_BYTES = 512 * 2**20
MAX_INDEX_BYTES = 64 * 2**20
UPSTREAM_TIMEOUT_S = 60.0
_PATH_RE = re.compile(r"^/[A-Za-z0-9._~%@+=:,/-]*$")


@dataclass(frozen=True)
class Route:
    prefix: str           # on the proxy: /pypi/simple/
    upstream: str         # https://pypi.org/simple/
    immutable: bool       # files: cached forever; else an index page with a TTL


@dataclass(frozen=True)
class Registry:
    name: str
    routes: tuple[Route, ...]
    # what deploy commands see (values may use {base}, the registry's guest URL)
    env: tuple[tuple[str, str], ...]


REGISTRIES: dict[str, Registry] = {
    "pypi": Registry("pypi", (
        Route("/pypi/simple/", "https://pypi.org/simple/", immutable=False),
        Route("/pypi/files/", "https://files.pythonhosted.org/", immutable=True),
    ), env=(("PIP_INDEX_URL", "{base}/pypi/simple/"), ("PIP_TRUSTED_HOST", "127.0.0.1"),
            ("UV_INDEX_URL", "{base}/pypi/simple/"), ("UV_INSECURE_HOST", "127.0.0.1"),
            ("POETRY_REPOSITORIES_PROXY_URL", "{base}/pypi/simple/"))),
    "npm": Registry("npm", (
        Route("/npm/", "https://registry.npmjs.org/", immutable=False),
    ), env=(("npm_config_registry", "{base}/npm/"), ("npm_config_audit", "false"),
            ("npm_config_fund", "false"), ("npm_config_update_notifier", "false"),
            ("npm_config_maxsockets", "4"),
            ("YARN_REGISTRY", "{base}/npm/"))),
}


def parse_registries(text: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in REGISTRIES]
    if unknown:
        raise ValueError(f"unknown package registries {unknown}; known: {', '.join(REGISTRIES)}")
    return names


def guest_env(registries: list[str]) -> dict[str, str]:
    """Environment of deploy commands: every installer pointed at the proxy."""
    env: dict[str, str] = {}
    for name in registries:
        for key, value in REGISTRIES[name].env:
            env[key] = value.format(base=GUEST_BASE)
    return env


def _is_immutable(route: Route, rest: str) -> bool:
    # npm tarballs live under <package>/-/<file>.tgz in the same namespace as packuments
    return route.immutable or "/-/" in rest


class PackageProxy:
    """One proxy per worker process (:func:`shared_proxy`), serving every lease's guest."""

    def __init__(self, cache_dir: Path, registries: list[str], *, index_ttl_s: float = 300.0,
                 upstreams: dict[str, str] | None = None) -> None:
        self.cache_dir = cache_dir
        self.registries = registries
        self.index_ttl_s = index_ttl_s
        routes = [r for name in registries for r in REGISTRIES[name].routes]
        if upstreams:      # tests: the same routes against a local stand-in registry
            routes = [Route(r.prefix, upstreams.get(r.prefix, r.upstream), r.immutable)
                      for r in routes]
        self.routes = sorted(routes, key=lambda r: -len(r.prefix))
        self.stats = {"hits": 0, "misses": 0, "stale": 0, "refused": 0}
        self._client = httpx.Client(timeout=UPSTREAM_TIMEOUT_S, follow_redirects=False,
                                    headers={"User-Agent": "diffie-package-proxy"})
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    # --- lifecycle ---

    def start(self) -> PackageProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy.handle(self, head=False)

            def do_HEAD(self) -> None:
                proxy.handle(self, head=True)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("package proxy: " + format, *args)

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="package-proxy",
                         daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the proxy first"
        return int(self._server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._client.close()

    def serve(self, conn: socket.socket) -> None:
        """Serve HTTP on a connection that arrived another way (a :class:`Tunnel`'s)."""
        assert self._server is not None, "start() the proxy first"
        self._server.process_request(conn, ("guest", 0))

    def guest_env(self) -> dict[str, str]:
        return guest_env(self.registries)

    # --- requests ---

    def handle(self, req: BaseHTTPRequestHandler, *, head: bool) -> None:
        path = req.path.split("?", 1)[0]
        route = self._route(path)
        if route is None:
            self.stats["refused"] += 1
            names = ", ".join(self.registries) or "none"
            _send(req, 403, f"diffie package proxy: {path[:200]!r} is not a path of an allowed "
                  f"registry ({names}); only GET of /pypi/... and /npm/... is served\n".encode(),
                  "text/plain", head=head)
            return
        rest = path[len(route.prefix):]
        accept = req.headers.get("Accept", "")
        try:
            status, body, ctype = self.fetch(route, rest, accept)
        except httpx.HTTPError as exc:
            _send(req, 502, f"diffie package proxy: upstream {route.upstream} failed: "
                  f"{type(exc).__name__}\n".encode(), "text/plain", head=head)
            return
        _send(req, status, body, ctype, head=head)

    def _route(self, path: str) -> Route | None:
        if not _PATH_RE.match(path) or "/../" in path or path.endswith("/..") or "//" in path:
            return None
        for route in self.routes:
            if path.startswith(route.prefix):
                return route
        return None

    def fetch(self, route: Route, rest: str, accept: str) -> tuple[int, bytes, str]:
        immutable = _is_immutable(route, rest)
        key = hashlib.sha256(f"{route.prefix}\0{rest}\0{'' if immutable else accept}"
                             .encode()).hexdigest()
        body_path = self.cache_dir / route.prefix.strip("/").replace("/", "-") / key[:2] / key
        meta_path = body_path.with_suffix(".json")
        cached = _read_cached(body_path, meta_path)
        if cached is not None and (immutable or time.time() - cached[2] < self.index_ttl_s):
            self.stats["hits"] += 1
            return 200, cached[0], cached[1]
        try:
            status, body, ctype = self._upstream(route, rest, accept, immutable)
        except httpx.HTTPError:
            if cached is not None:
                self.stats["stale"] += 1
                return 200, cached[0], cached[1]
            raise
        self.stats["misses"] += 1
        if status == 200:
            _write_cached(body_path, meta_path, body, ctype)
        elif cached is not None and status >= 500:
            self.stats["stale"] += 1
            return 200, cached[0], cached[1]
        return status, body, ctype

    def _upstream(self, route: Route, rest: str, accept: str,
                  immutable: bool) -> tuple[int, bytes, str]:
        limit = MAX_FILE_BYTES if immutable else MAX_INDEX_BYTES
        headers = {"Accept": accept} if accept else {}
        with self._client.stream("GET", route.upstream + rest, headers=headers) as resp:
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > limit:
                    return 502, f"diffie package proxy: {rest[:200]} is more than {limit:,} bytes\n" \
                        .encode(), "text/plain"
                chunks.append(chunk)
            body = b"".join(chunks)
            ctype = resp.headers.get("content-type", "application/octet-stream")
            status = resp.status_code
        if status in (301, 302, 303, 307, 308):
            return 502, b"diffie package proxy: the upstream redirected; not followed\n", \
                "text/plain"
        if not immutable and status == 200 and _is_text(ctype):
            body = self._rewrite(body)
        return status, body, ctype

    def _rewrite(self, body: bytes) -> bytes:
        """Upstream URLs in an index page -> the proxy's (files then come through it too)."""
        for route in self.routes:
            body = body.replace(route.upstream.encode(), f"{GUEST_BASE}{route.prefix}".encode())
            escaped = route.upstream.replace("/", "\\/").encode()   # JSON may write "https:\/\/"
            body = body.replace(escaped, f"{GUEST_BASE}{route.prefix}".encode())
        return body


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """An installer that hangs up mid-answer (or a relay torn down with the VM) is
        routine: logged, not printed."""
        log.debug("package proxy: connection from %s ended with an error", client_address,
                  exc_info=True)


def _is_text(ctype: str) -> bool:
    return any(t in ctype for t in ("json", "html", "text"))


def _read_cached(body_path: Path, meta_path: Path) -> tuple[bytes, str, float] | None:
    try:
        meta = json.loads(meta_path.read_text())
        return body_path.read_bytes(), str(meta["content_type"]), float(meta["fetched_at"])
    except (OSError, ValueError, KeyError):
        return None


def _write_cached(body_path: Path, meta_path: Path, body: bytes, ctype: str) -> None:
    body_path.parent.mkdir(parents=True, exist_ok=True)
    for path, data in ((body_path, body),
                       (meta_path, json.dumps({"content_type": ctype,
                                               "fetched_at": time.time()}).encode())):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)


def _send(req: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str, *,
          head: bool) -> None:
    req.send_response(status)
    req.send_header("Content-Type", ctype)
    req.send_header("Content-Length", str(len(body)))
    req.end_headers()
    if not head:
        req.wfile.write(body)


def relay_command() -> list[str]:
    """The guest's half of the tunnel: every connection the host opens to guest port
    GUEST_TUNNEL is paired with the next installer connection to 127.0.0.1:GUEST_LISTEN."""
    return ["systemd-run", f"--unit={RELAY_UNIT}", "--collect", "--quiet", "socat",
            f"TCP-LISTEN:{GUEST_TUNNEL},fork,reuseaddr",
            f"TCP-LISTEN:{GUEST_LISTEN},bind=127.0.0.1,reuseaddr,reuseport"]


RELAY_READY_S = 30             # how long the deploy waits for the guest relay to listen


def relay_ready_command(port: int = GUEST_LISTEN, wait_s: int = RELAY_READY_S) -> list[str]:
    """Exit 0 once something listens on 127.0.0.1:``port`` in the guest (the relay forks its
    listener when the host's first pooled connection arrives), 1 after ``wait_s``. Reads
    /proc/net/tcp (sh and grep only), so the check does not take one of the relay's pairings."""
    row = f" 0100007F:{port:04X} 00000000:0000 0A "        # 127.0.0.1:port, state LISTEN
    script = (f"i=0; while [ $i -lt {wait_s * 10} ]; do grep -q '{row}' /proc/net/tcp && exit 0; "
              "sleep 0.1; i=$((i+1)); done; exit 1")
    return ["sh", "-c", script]


STOP_RELAY = ["systemctl", "stop", RELAY_UNIT]


class Tunnel:
    """The host's half: keeps ``size`` idle connections to ``127.0.0.1:host_port`` (QEMU
    forwards each into the guest relay); one that receives a request is served by the proxy
    and replaced. A connection closed before any data (the relay is not up yet) is retried
    after a short pause."""

    def __init__(self, proxy: PackageProxy, host_port: int, size: int = POOL_SIZE) -> None:
        self.proxy = proxy
        self.host_port = host_port
        self.size = size
        self.served = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"package-tunnel-{host_port}",
                                        daemon=True)

    def start(self) -> Tunnel:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        idle: list[socket.socket] = []
        try:
            while not self._stop.is_set():
                while len(idle) < self.size and not self._stop.is_set():
                    try:
                        idle.append(socket.create_connection(("127.0.0.1", self.host_port),
                                                             timeout=2))
                    except OSError:
                        self._stop.wait(0.05)
                        break
                if not idle:
                    continue
                readable, _, _ = select.select(idle, [], [], 0.05)
                for conn in readable:
                    idle.remove(conn)
                    try:
                        first = conn.recv(1, socket.MSG_PEEK)
                    except OSError:
                        first = b""
                    if not first:              # QEMU closed it: nothing listened in the guest
                        conn.close()
                        self._stop.wait(0.05)
                        continue
                    conn.settimeout(UPSTREAM_TIMEOUT_S * 2)
                    self.served += 1
                    self.proxy.serve(conn)
        finally:
            for conn in idle:
                conn.close()


_shared: dict[tuple[str, tuple[str, ...], float], PackageProxy] = {}
_shared_lock = threading.Lock()


def shared_proxy(cache_dir: Path, registries: list[str], index_ttl_s: float) -> PackageProxy | None:
    """This process's proxy for these settings (started on first use); None if no registry is
    allowed."""
    if not registries:
        return None
    key = (str(cache_dir), tuple(registries), index_ttl_s)
    with _shared_lock:
        proxy = _shared.get(key)
        if proxy is None:
            proxy = _shared[key] = PackageProxy(cache_dir, registries,
                                                index_ttl_s=index_ttl_s).start()
        return proxy
