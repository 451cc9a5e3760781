"""The package proxy: only allowed registries' paths, index pages rewritten to come back through
it, files cached for good and index pages served stale when the upstream fails; and the tunnel
(the same socat relay the guest runs) carrying an installer's requests to it."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import pytest

from diffie.sandbox import package_proxy as pp

WHEEL = b"PK\x03\x04 a wheel's bytes"


class Upstream:
    """A stand-in for pypi.org + files.pythonhosted.org on this machine's loopback."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.down = False
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                upstream.requests.append(self.path)
                if upstream.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                if self.path.startswith("/simple/markdown/"):
                    body = (f'<a href="{upstream.url}/files/packages/ab/Markdown-3.5-py3-none-'
                            'any.whl#sha256=00">Markdown-3.5-py3-none-any.whl</a>').encode()
                    ctype = "text/html"
                elif self.path == "/npm/left-pad":
                    body = json.dumps({"name": "left-pad", "versions": {"1.3.0": {"dist": {
                        "tarball": f"{upstream.url}/npm/left-pad/-/left-pad-1.3.0.tgz"}}}},
                    ).replace("/", "\\/").encode()          # JSON may escape its slashes
                    ctype = "application/json"
                elif self.path.startswith(("/files/packages/", "/npm/left-pad/-/")):
                    body, ctype = WHEEL, "application/octet-stream"
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.server.shutdown()
    up.server.server_close()


@pytest.fixture
def proxy(tmp_path: Path, upstream: Upstream) -> Iterator[pp.PackageProxy]:
    proxy = pp.PackageProxy(tmp_path / "cache", ["pypi"], index_ttl_s=0.5, upstreams={
        "/pypi/simple/": f"{upstream.url}/simple/", "/pypi/files/": f"{upstream.url}/files/"},
    ).start()
    yield proxy
    proxy.close()


def test_only_the_allowed_registries_paths_are_served(proxy: pp.PackageProxy) -> None:
    base = f"http://127.0.0.1:{proxy.port}"
    for path in ("/etc/passwd", "/npm/left-pad", "//evil.example/x"):
        resp = httpx.get(base + path, timeout=10)
        assert resp.status_code == 403, path
        assert "not a path of an allowed registry (pypi)" in resp.text
    assert httpx.post(base + "/pypi/simple/markdown/", timeout=10).status_code == 501
    for target in (b"http://evil.example/", b"/pypi/simple/../../x", b"/pypi/files/a\\b"):
        with socket.create_connection(("127.0.0.1", proxy.port)) as raw:  # as sent, unnormalised
            raw.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 403"), target


def test_index_pages_point_back_at_the_proxy_and_files_are_cached(
        proxy: pp.PackageProxy, upstream: Upstream) -> None:
    base = f"http://127.0.0.1:{proxy.port}"
    index = httpx.get(f"{base}/pypi/simple/markdown/", timeout=10)
    assert index.status_code == 200
    assert f'href="{pp.GUEST_BASE}/pypi/files/packages/ab/Markdown-3.5' in index.text
    assert upstream.url not in index.text
    wheel = f"{base}/pypi/files/packages/ab/Markdown-3.5-py3-none-any.whl"
    assert httpx.get(wheel, timeout=10).content == WHEEL
    upstream.down = True
    assert httpx.get(wheel, timeout=10).content == WHEEL                  # cached for good
    time.sleep(0.6)                                                        # past the TTL
    stale = httpx.get(f"{base}/pypi/simple/markdown/", timeout=10)
    assert stale.status_code == 200 and "Markdown-3.5" in stale.text       # stale, not 503
    assert proxy.stats["stale"] == 1 and proxy.stats["hits"] >= 1
    missing = httpx.get(f"{base}/pypi/simple/no-such-project/", timeout=10)
    assert missing.status_code == 503                                      # upstream's answer


def test_npm_packuments_point_back_at_the_proxy_and_tarballs_are_immutable(
        tmp_path: Path, upstream: Upstream) -> None:
    proxy = pp.PackageProxy(tmp_path / "npm-cache", ["npm"], index_ttl_s=0,
                            upstreams={"/npm/": f"{upstream.url}/npm/"}).start()
    try:
        base = f"http://127.0.0.1:{proxy.port}"
        packument = httpx.get(f"{base}/npm/left-pad", timeout=10).json()
        tarball = packument["versions"]["1.3.0"]["dist"]["tarball"]
        assert tarball == f"{pp.GUEST_BASE}/npm/left-pad/-/left-pad-1.3.0.tgz"
        path = tarball[len(pp.GUEST_BASE):]
        assert httpx.get(base + path, timeout=10).content == WHEEL
        upstream.down = True
        assert httpx.get(base + path, timeout=10).content == WHEEL       # cached for good
        assert httpx.get(f"{base}/pypi/simple/x/", timeout=10).status_code == 403  # not allowed
    finally:
        proxy.close()


def test_deploy_commands_see_the_installers_pointed_at_the_guest_relay() -> None:
    env = pp.guest_env(["pypi", "npm"])
    assert env["PIP_INDEX_URL"] == "http://127.0.0.1:3141/pypi/simple/"
    assert env["npm_config_registry"] == "http://127.0.0.1:3141/npm/"
    assert pp.guest_env([]) == {}
    with pytest.raises(ValueError, match="unknown package registries"):
        pp.parse_registries("pypi,cargo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_relay_hands_each_installer_connection_to_the_proxy(proxy: pp.PackageProxy) -> None:
    tunnel_port, listen_port = _free_port(), _free_port()
    argv = pp.relay_command()[pp.relay_command().index("socat"):]
    argv = [a.replace(str(pp.GUEST_TUNNEL), str(tunnel_port))
             .replace(str(pp.GUEST_LISTEN), str(listen_port)) for a in argv]
    relay = subprocess.Popen(argv)          # as in the guest (hostfwd = a direct connection)
    tunnel = pp.Tunnel(proxy, tunnel_port).start()
    try:
        deadline = time.monotonic() + 10
        answers: list[int] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{listen_port}", timeout=10) as client:
            while len(answers) < 12 and time.monotonic() < deadline:
                try:
                    answers.append(client.get("/pypi/simple/markdown/").status_code)
                except httpx.TransportError:
                    time.sleep(0.1)         # the relay is still starting
        with httpx.Client(base_url=f"http://127.0.0.1:{listen_port}", timeout=10) as fresh:
            answers += [fresh.get("/etc/passwd").status_code]
        assert answers == [200] * 12 + [403]
        assert tunnel.served >= 2
    finally:
        tunnel.close()
        relay.terminate()
        relay.wait(timeout=10)


def test_the_relay_ready_check_waits_for_a_listener_on_the_guest_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        assert subprocess.run(pp.relay_ready_command(port, wait_s=5), timeout=30).returncode == 0
    # nothing listens there any more: it gives up after wait_s
    started = time.monotonic()
    assert subprocess.run(pp.relay_ready_command(port, wait_s=1), timeout=30).returncode == 1
    assert 0.9 <= time.monotonic() - started < 10
