"""HTTP: a ThreadingHTTPServer, a small router, static files, errors and the access log."""

from __future__ import annotations

import json
import mimetypes
import re
import sys
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from app import api, catalog, pages
from app.auth import (
    authenticate,
    current_user,
    end_session,
    expired_session_cookie,
    read_cookie,
    session_cookie,
    start_session,
)
from app.config import STATIC_DIR, Config
from app.db import Database

MAX_BODY_BYTES = 64 * 1024
PRODUCT_PATH = re.compile(r"^/products/(\d{1,9})$")
API_PRODUCT_PATH = re.compile(r"^/api/products/(\d{1,9})$")
CONTENT_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
}


class ShopServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = Database(config.database_url)
        super().__init__((config.host, config.port), Handler)


class Handler(BaseHTTPRequestHandler):
    server: ShopServer
    protocol_version = "HTTP/1.1"
    server_version = "DiffieShop/1.0"

    def version_string(self) -> str:
        return self.server_version

    # --- plumbing -------------------------------------------------------------------------

    @property
    def db(self) -> Database:
        return self.server.db

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write("shop: " + (format % args) + "\n")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        elapsed_ms = (time.monotonic() - getattr(self, "_started", time.monotonic())) * 1000
        status = code.value if isinstance(code, HTTPStatus) else code
        self.log_message("%s %s %s %.0fms", self.command, self.path, status, elapsed_ms)

    def send(self, status: int, body: bytes, content_type: str,
             headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers or []:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_html(self, status: int, html: str, headers: list[tuple[str, str]] | None = None) -> None:
        self.send(status, html.encode("utf-8"), "text/html; charset=utf-8", headers)

    def send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
        self.send(status, body, "application/json")

    def redirect(self, location: str, headers: list[tuple[str, str]] | None = None) -> None:
        self.send(303, b"", "text/plain; charset=utf-8", [("Location", location), *(headers or [])])

    def read_body(self) -> bytes | None:
        """The request body, or None after answering 411/413 for a bad length."""
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            self.send_json(400, {"error": "bad Content-Length"})
            return None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self.send_json(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
            return None
        return self.rfile.read(length)

    @property
    def session_token(self) -> str | None:
        return read_cookie(self.headers.get("Cookie"))

    def handle_one_request(self) -> None:
        self._started = time.monotonic()
        super().handle_one_request()

    def dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        try:
            if method == "POST":
                self.route_post(path)
            else:
                self.route_get(path)
        except Exception:  # a bug in a page: log it, answer 500
            traceback.print_exc(file=sys.stderr)
            if path.startswith("/api/"):
                self.send_json(500, {"error": "internal server error"})
            else:
                self.send_html(500, pages.error_page())

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_HEAD(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    # --- routes ---------------------------------------------------------------------------

    def route_get(self, path: str) -> None:
        if path == "/":
            self.send_html(200, pages.home_page())
        elif match := PRODUCT_PATH.match(path):
            product = catalog.get_product(self.db, int(match.group(1)))
            if product is None:
                self.send_html(404, pages.not_found_page())
            else:
                self.send_html(200, pages.product_page(product))
        elif path == "/cart":
            self.send_html(200, pages.cart_page())
        elif path == "/signin":
            self.send_html(200, pages.signin_page(next_path=self.next_path()))
        elif path == "/account":
            self.account()
        elif path == "/signout":
            self.signout()
        elif path == "/health":
            self.health()
        elif path == "/api/products":
            self.send_json(*api.products(self.db))
        elif match := API_PRODUCT_PATH.match(path):
            self.send_json(*api.product(self.db, int(match.group(1))))
        elif path == "/api/me":
            self.send_json(*api.me(self.db, self.session_token))
        elif path == "/favicon.ico":
            self.static("/static/img/favicon.svg")
        elif path.startswith("/static/"):
            self.static(path)
        elif path.startswith("/api/"):
            self.send_json(404, {"error": "not found"})
        else:
            self.send_html(404, pages.not_found_page())

    def route_post(self, path: str) -> None:
        body = self.read_body()
        if body is None:
            return
        if path == "/signin":
            self.signin(body)
        elif path == "/signout":
            self.signout()
        elif path == "/api/cart/quote":
            try:
                payload = json.loads(body or b"null")
            except (ValueError, UnicodeDecodeError):
                self.send_json(400, {"error": "body is not valid JSON"})
                return
            self.send_json(*api.cart_quote(self.db, payload))
        elif path.startswith("/api/"):
            self.send_json(405 if path in ("/api/products", "/api/me") else 404,
                           {"error": "method not allowed" if path in ("/api/products", "/api/me")
                            else "not found"})
        else:
            self.send_html(405, pages.not_found_page())

    # --- pages with behaviour -------------------------------------------------------------

    def next_path(self, value: str | None = None) -> str:
        if value is None:
            value = parse_qs(urlsplit(self.path).query).get("next", ["/account"])[0]
        # only local paths: no scheme, no host, no protocol-relative URL
        if not value.startswith("/") or value.startswith("//") or "\\" in value:
            return "/account"
        return value

    def signin(self, body: bytes) -> None:
        form = parse_qs(body.decode("utf-8", "replace"))
        email = form.get("email", [""])[0]
        password = form.get("password", [""])[0]
        next_path = self.next_path(form.get("next", ["/account"])[0])
        user = authenticate(self.db, email, password)
        if user is None:
            self.send_html(401, pages.signin_page(email=email, next_path=next_path,
                                                  error="Invalid email or password."))
            return
        token = start_session(self.db, user["id"])
        self.redirect(next_path, [("Set-Cookie", session_cookie(token))])

    def signout(self) -> None:
        token = self.session_token
        if token:
            end_session(self.db, token)
        self.redirect("/", [("Set-Cookie", expired_session_cookie())])

    def account(self) -> None:
        user = current_user(self.db, self.session_token)
        if user is None:
            self.redirect("/signin?next=/account")
            return
        self.send_html(200, pages.account_page(user, catalog.orders_for(self.db, user["id"])))

    def health(self) -> None:
        if self.db.ping():
            self.send(200, b"ok\n", "text/plain; charset=utf-8")
        else:
            self.send(503, b"database unavailable\n", "text/plain; charset=utf-8")

    def static(self, path: str) -> None:
        root = STATIC_DIR.resolve()
        target = (root / path.removeprefix("/static/")).resolve()
        if root not in target.parents or not target.is_file():
            self.send(404, b"not found\n", "text/plain; charset=utf-8")
            return
        content_type = CONTENT_TYPES.get(target.suffix) or (
            mimetypes.guess_type(target.name)[0] or "application/octet-stream")
        self.send(200, target.read_bytes(), content_type)


def serve(config: Config) -> None:
    server = ShopServer(config)
    host, port = server.server_address[:2]
    sys.stderr.write(f"shop: listening on http://{host!s}:{port}\n")
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.25)
    finally:
        server.server_close()
