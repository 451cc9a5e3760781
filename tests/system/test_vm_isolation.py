"""Isolation: from inside the guest, neither the host nor the user-mode DNS answers; from the
host, the forwarded app port does. Only listeners this test runs on 127.0.0.1 are targeted,
plus the user-mode network's own gateway/DNS addresses (10.0.2.2, 10.0.2.3), never another host.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from diffie.sandbox.libvirt import LibvirtSandbox

pytestmark = [pytest.mark.system, pytest.mark.timeout(1800)]

PROBE = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    socket.create_connection((host, port), timeout=5).close()
    print("CONNECTED")
except OSError as exc:
    print("BLOCKED", type(exc).__name__, exc)
"""


class Listener:
    """A TCP listener on the host's loopback that records every connection it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


def test_guest_reaches_neither_host_nor_dns_but_the_host_reaches_the_app(
        sandbox: LibvirtSandbox) -> None:
    listener = Listener()
    try:
        # the probe itself works: the host reaches its own listener
        socket.create_connection(("127.0.0.1", listener.port), timeout=5).close()
        deadline = time.monotonic() + 10
        while listener.accepted < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        baseline = listener.accepted
        assert baseline == 1
        with sandbox.lease("shop", run_id="sys-isolation") as machine:
            own = machine.exec(["python3", "-c", PROBE, "127.0.0.1", "8000"], timeout=60)
            assert own.stdout.startswith("CONNECTED"), own       # the probe works in the guest
            for target, port in (("10.0.2.2", listener.port), ("10.0.2.3", 53)):
                res = machine.exec(["python3", "-c", PROBE, target, str(port)], timeout=60)
                assert res.ok and res.stdout.startswith("BLOCKED"), (target, port, res)
            route = machine.exec(["ip", "route"])
            assert "10.0.2.2" in route.stdout                    # there is a route; it is refused
            assert httpx.get(machine.url(8000) + "/health", timeout=30).status_code == 200
        assert listener.accepted == baseline                     # nothing came through
    finally:
        listener.close()


FETCH = """
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=20).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except OSError as exc:
    print("BLOCKED", type(exc).__name__)
"""


def test_the_package_relay_serves_only_registry_paths_and_closes_before_the_flows(
        sandbox: LibvirtSandbox) -> None:
    with sandbox.lease("shop", run_id="sys-packages") as machine:
        assert machine.env["PIP_INDEX_URL"] == "http://127.0.0.1:3141/pypi/simple/"
        # during the deploy: the relay answers, and refuses what is not a registry path
        refused = machine.exec(["python3", "-c", FETCH, "http://127.0.0.1:3141/etc/passwd"],
                               timeout=60)
        assert refused.stdout.strip() == "403", refused
        # the deployed state is checkpointed: from here on (every flow) there is no way out
        machine.checkpoint()
        assert machine.env == {}
        gone = machine.exec(["python3", "-c", FETCH, "http://127.0.0.1:3141/pypi/simple/x/"],
                            timeout=60)
        assert gone.stdout.startswith("BLOCKED"), gone
        machine.reset()
        again = machine.exec(["python3", "-c", FETCH, "http://127.0.0.1:3141/pypi/simple/x/"],
                             timeout=60)
        assert again.stdout.startswith("BLOCKED"), again
