"""Git's smart HTTP for tests: ``git http-backend`` (CGI) behind a small ``http.server`` on
127.0.0.1, serving local bare repositories and requiring the installation token in Basic auth
(``x-access-token:<token>``), like github.com. Plus helpers to build repositories."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass
class GitRequest:
    method: str
    path: str
    user: str
    authorized: bool


class GitSmartHTTP:
    """``git http-backend`` behind a tiny HTTP server, serving ``<root>/<owner>/<repo>.git``.

    Every request needs ``Authorization: Basic base64(x-access-token:<token>)`` with a token
    ``is_valid_token`` accepts (401 with ``WWW-Authenticate`` otherwise). With
    ``protocol_v2=False`` the server speaks protocol v0 only, where fetching a commit by SHA is
    refused (the client must fall back to fetching refs)."""

    def __init__(self, root: Path, is_valid_token: Callable[[str], bool], *,
                 protocol_v2: bool = True, backend: str | None = None) -> None:
        self.root = Path(root)
        self.is_valid_token = is_valid_token
        self.protocol_v2 = protocol_v2
        self.backend = backend or self._find_backend()
        self.requests: list[GitRequest] = []
        self._server: ThreadingHTTPServer | None = None

    @staticmethod
    def _find_backend() -> str:
        exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                                   check=True).stdout.strip()
        return str(Path(exec_path) / "git-http-backend")

    def start(self) -> GitSmartHTTP:
        server = self

        class Handler(_GitHandler):
            owner = server

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name="git-smart-http").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GitSmartHTTP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def clone_url(self, owner: str, repo: str) -> str:
        return f"{self.url}/{owner}/{repo}.git"


class _GitHandler(BaseHTTPRequestHandler):
    owner: GitSmartHTTP
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        srv = self.owner
        parts = urlsplit(self.path)
        body = self._read_body()
        user, token = "", ""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, token = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                pass
        ok = user == "x-access-token" and bool(token) and srv.is_valid_token(token)
        srv.requests.append(GitRequest(self.command, parts.path, user, ok))
        if not ok:
            self._reply(401, b"Authentication failed\n",
                        {"WWW-Authenticate": 'Basic realm="GitHub"',
                         "Content-Type": "text/plain"})
            return
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "GIT_PROJECT_ROOT": str(srv.root), "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": parts.path, "QUERY_STRING": parts.query,
               "REQUEST_METHOD": self.command, "REMOTE_USER": user,
               "REMOTE_ADDR": self.client_address[0],
               "CONTENT_TYPE": self.headers.get("Content-Type", ""),
               "CONTENT_LENGTH": str(len(body)), "HOME": str(srv.root)}
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if srv.protocol_v2 and self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        proc = subprocess.run([srv.backend], input=body, env=env, capture_output=True,
                              timeout=120)
        out = proc.stdout
        sep = out.find(b"\r\n\r\n")
        head, rest = (out[:sep], out[sep + 4:]) if sep >= 0 else out.split(b"\n\n", 1) \
            if b"\n\n" in out else (b"", out)
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        if proc.returncode != 0 and not head:
            self._reply(500, proc.stderr[-2000:], {"Content-Type": "text/plain"})
            return
        self._reply(status, rest, headers)

    do_GET = do_POST = _serve


# -- repositories ----------------------------------------------------------------------------------

def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` as a fixed test identity; returns stdout stripped."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit_files(work: Path, files: dict[str, str], message: str) -> str:
    """Write ``files`` into the working copy ``work``, commit them, return the SHA."""
    for name, text in files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", message)
    return git(work, "rev-parse", "HEAD")


def publish_bare(work: Path, root: Path, owner: str, repo: str) -> Path:
    """Push every branch and ``refs/pull/*`` of ``work`` into ``<root>/<owner>/<repo>.git``."""
    bare = root / owner / f"{repo}.git"
    if not bare.exists():
        bare.parent.mkdir(parents=True, exist_ok=True)
        git(root, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", "--force", str(bare), "refs/heads/*:refs/heads/*")
    return bare
