"""The sample shop against real PostgreSQL over real HTTP, and every change of its corpus.

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth): ShopServer creates and drops
one database per server.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import psycopg
import pytest

from examples.corpus import (
    CHANGES_DIR,
    SHOP_DIR,
    ChangeCase,
    ShopServer,
    free_port,
    load_manifest,
    materialize_repo,
)

pytestmark = pytest.mark.integration

CASES = load_manifest(CHANGES_DIR)
CASE_BY_ID = {c.id: c for c in CASES}
ADA = "shop_session=seeded-session-ada"
GRACE = "shop_session=seeded-session-grace"


class Reply:
    def __init__(self, status: int, headers: Message, body: bytes, elapsed: float) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        assert self.headers.get("Content-Type") == "application/json"
        return json.loads(self.body)


def request(base_url: str, path: str, *, method: str = "GET", body: bytes | str | None = None,
            cookie: str | None = None, content_type: str | None = None,
            timeout: float = 10) -> Reply:
    """One request, redirects not followed."""
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=timeout)
    headers = {}
    if cookie:
        headers["Cookie"] = cookie
    if content_type:
        headers["Content-Type"] = content_type
    started = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, resp.headers, data, time.monotonic() - started)
    finally:
        conn.close()


def post_json(base_url: str, path: str, payload: Any, **kw: Any) -> Reply:
    return request(base_url, path, method="POST", body=json.dumps(payload),
                   content_type="application/json", **kw)


def post_form(base_url: str, path: str, form: dict[str, str], **kw: Any) -> Reply:
    return request(base_url, path, method="POST", body=urllib.parse.urlencode(form),
                   content_type="application/x-www-form-urlencoded", **kw)


def set_cookie(reply: Reply, name: str) -> str | None:
    for header in reply.headers.get_all("Set-Cookie") or []:
        first = header.split(";", 1)[0]
        key, _, value = first.partition("=")
        if key == name:
            return value
    return None


@pytest.fixture(scope="module")
def shop() -> Iterator[ShopServer]:
    with ShopServer(SHOP_DIR) as server:
        yield server


# --- pages --------------------------------------------------------------------------------------

def test_health_answers_ok_when_the_database_answers(shop):
    reply = request(shop.url, "/health")
    assert (reply.status, reply.body) == (200, b"ok\n")


def test_health_is_503_without_a_database_while_pages_still_serve(tmp_path):
    port = free_port()
    env = {**os.environ, "SHOP_DATABASE_URL": "host=127.0.0.1 port=5432 user=postgres "
           "dbname=shop_does_not_exist connect_timeout=2", "SHOP_PORT": str(port),
           "SHOP_HOST": "127.0.0.1", "PYTHONDONTWRITEBYTECODE": "1"}
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "app"], cwd=SHOP_DIR, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                reply = request(url, "/health")
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "log").read_text()
                time.sleep(0.1)
        assert reply.status == 503
        assert request(url, "/").status == 200
        assert request(url, "/api/products").status == 500
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0, "SIGTERM ends the server cleanly"


def test_home_page_is_the_catalogue_shell(shop):
    reply = request(shop.url, "/")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    html = reply.text
    assert '<body data-page="home">' in html
    assert 'id="product-grid"' in html
    assert '<script src="/static/app.js" defer></script>' in html
    assert 'id="nav-cart"' in html and 'id="cart-count"' in html


def test_product_page_has_the_product_and_the_button(shop):
    html = request(shop.url, "/products/2").text
    assert "<h1>Pixel Tee</h1>" in html
    assert "$24.00" in html
    assert 'id="add-to-cart"' in html and 'data-product-id="2"' in html
    assert "In stock" in html
    assert "Only 3 left" in request(shop.url, "/products/4").text
    assert request(shop.url, "/products/999").status == 404
    assert request(shop.url, "/products/abc").status == 404
    assert request(shop.url, "/nowhere").status == 404


def test_cart_and_signin_pages_render(shop):
    cart = request(shop.url, "/cart")
    assert cart.status == 200 and 'id="cart-total"' in cart.text
    signin = request(shop.url, "/signin")
    assert signin.status == 200
    for fragment in ('id="email"', 'id="password"', 'id="signin-submit"', 'method="post"'):
        assert fragment in signin.text


# --- JSON API ----------------------------------------------------------------------------------

def test_api_lists_the_seeded_products(shop):
    products = request(shop.url, "/api/products").json()["products"]
    assert [p["id"] for p in products] == list(range(1, 9))
    tee = products[1]
    assert tee["name"] == "Pixel Tee" and tee["price"] == "$24.00" and tee["price_cents"] == 2400
    assert tee["url"] == "/products/2" and tee["image"] == "/static/img/tee.svg"
    for product in products:
        assert request(shop.url, product["image"]).status == 200


def test_api_product_detail_and_404(shop):
    detail = request(shop.url, "/api/products/2").json()
    assert detail["availability"] == "In stock" and detail["stock"] == 18
    missing = request(shop.url, "/api/products/999")
    assert missing.status == 404 and missing.json() == {"error": "not found"}
    assert request(shop.url, "/api/nothing").status == 404
    assert request(shop.url, "/api/products", method="POST", body=b"{}").status == 405


def test_cart_quote_prices_from_the_database(shop):
    quote = post_json(shop.url, "/api/cart/quote", {"items": [{"product_id": 2, "quantity": 1}]})
    body = quote.json()
    assert (body["subtotal"], body["shipping"], body["total"]) == ("$24.00", "$4.95", "$28.95")
    assert body["lines"][0]["name"] == "Pixel Tee" and body["count"] == 1
    free = post_json(shop.url, "/api/cart/quote", {"items": [
        {"product_id": 6, "quantity": 1}, {"product_id": 1, "quantity": 1},
        {"product_id": 1, "quantity": 1}, {"product_id": 4242, "quantity": 1}]}).json()
    assert free["total"] == "$76.00" and free["shipping"] == "Free"
    assert free["unknown_product_ids"] == [4242]
    assert [(ln["product_id"], ln["quantity"]) for ln in free["lines"]] == [(6, 1), (1, 2)]
    empty = post_json(shop.url, "/api/cart/quote", {"items": []}).json()
    assert empty["total"] == "$0.00" and empty["lines"] == []


@pytest.mark.parametrize(("body", "words"), [
    (b"not json", "not valid JSON"),
    (b'{"items": "x"}', "'items' list"),
    (b'{"items": [{"product_id": "2"}]}', "product_id"),
    (b'{"items": [{"product_id": 2, "quantity": 0}]}', "quantity"),
    (b'{"items": [{"product_id": 2, "quantity": true}]}', "quantity"),
])
def test_cart_quote_rejects_bad_input(shop, body, words):
    reply = request(shop.url, "/api/cart/quote", method="POST", body=body,
                    content_type="application/json")
    assert reply.status == 400 and words in reply.json()["error"]


def test_oversized_bodies_are_refused(shop):
    reply = request(shop.url, "/api/cart/quote", method="POST", body=b"x" * (65 * 1024),
                    content_type="application/json")
    assert reply.status == 413


def test_api_me(shop):
    assert request(shop.url, "/api/me").json() == {"signed_in": False}
    me = request(shop.url, "/api/me", cookie=ADA).json()
    assert me == {"signed_in": True,
                  "user": {"id": 1, "name": "Ada Lovelace", "email": "ada@example.com"}}
    assert request(shop.url, "/api/me", cookie="shop_session=forged").json()["signed_in"] is False


# --- sessions -----------------------------------------------------------------------------------

def test_account_needs_a_session(shop):
    reply = request(shop.url, "/account")
    assert reply.status == 303 and reply.headers["Location"] == "/signin?next=/account"


def test_the_seeded_session_shows_the_order_history(shop):
    html = request(shop.url, "/account", cookie=ADA).text
    assert "<h1>Ada Lovelace</h1>" in html
    for order in ("#1003", "#1002", "#1001"):
        assert order in html
    assert html.index("#1003") < html.index("#1002") < html.index("#1001")   # newest first
    assert "12 March 2024" in html and "$37.50" in html and "Delivered" in html
    grace = request(shop.url, "/account", cookie=GRACE).text
    assert "<h1>Grace Hopper</h1>" in grace and "#1004" in grace and "#1001" not in grace


def test_sign_in_sets_a_session_cookie_and_sign_out_ends_it(shop):
    reply = post_form(shop.url, "/signin", {"email": "ada@example.com",
                                            "password": "analytical-engine", "next": "/account"})
    assert reply.status == 303 and reply.headers["Location"] == "/account"
    token = set_cookie(reply, "shop_session")
    assert token and token != "seeded-session-ada"
    assert "HttpOnly" in (reply.headers["Set-Cookie"] or "")
    cookie = f"shop_session={token}"
    assert "<h1>Ada Lovelace</h1>" in request(shop.url, "/account", cookie=cookie).text
    out = request(shop.url, "/signout", cookie=cookie)
    assert out.status == 303 and set_cookie(out, "shop_session") == ""
    assert request(shop.url, "/account", cookie=cookie).status == 303


def test_sign_in_is_case_insensitive_on_email_and_refuses_open_redirects(shop):
    reply = post_form(shop.url, "/signin", {"email": " ADA@example.com", "password": "analytical-engine",
                                            "next": "//evil.example/x"})
    assert reply.status == 303 and reply.headers["Location"] == "/account"


def test_a_wrong_password_is_401_and_the_form_is_escaped(shop):
    reply = post_form(shop.url, "/signin", {"email": "<script>x</script>@example.com",
                                            "password": "nope"})
    assert reply.status == 401
    assert "Invalid email or password." in reply.text
    assert "<script>x</script>" not in reply.text and "&lt;script&gt;x&lt;/script&gt;" in reply.text
    assert set_cookie(reply, "shop_session") is None
    wrong = post_form(shop.url, "/signin", {"email": "ada@example.com", "password": "analytical"})
    assert wrong.status == 401


# --- static files, determinism, logs, initdb ------------------------------------------------------

@pytest.mark.parametrize(("path", "content_type"), [
    ("/static/app.js", "text/javascript; charset=utf-8"),
    ("/static/style.css", "text/css; charset=utf-8"),
    ("/static/img/tee.svg", "image/svg+xml"),
    ("/static/img/logo.svg", "image/svg+xml"),
    ("/static/fonts/shop-sans.woff2", "font/woff2"),
    ("/favicon.ico", "image/svg+xml"),
])
def test_static_files(shop, path, content_type):
    reply = request(shop.url, path)
    assert reply.status == 200 and reply.headers["Content-Type"] == content_type
    assert 0 < len(reply.body) < 100_000


@pytest.mark.parametrize("path", ["/static/../app/db.py", "/static/%2e%2e/app/config.py",
                                  "/static/nope.js", "/static/img"])
def test_static_files_stay_inside_static(shop, path):
    assert request(shop.url, path).status == 404


def test_rendering_is_deterministic(shop):
    for path, cookie in [("/", None), ("/products/2", None), ("/cart", None), ("/signin", None),
                         ("/account", ADA), ("/api/products", None), ("/api/products/4", None),
                         ("/api/me", ADA)]:
        first = request(shop.url, path, cookie=cookie).body
        assert request(shop.url, path, cookie=cookie).body == first, path


def test_the_server_log_records_requests(shop):
    request(shop.url, "/health")
    assert "GET /health 200" in shop.log_text()
    assert "listening on http://127.0.0.1:" in shop.log_text()


def test_initdb_is_idempotent(shop):
    env = {**os.environ, "SHOP_DATABASE_URL": shop.database_url}
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "app.initdb"], cwd=SHOP_DIR, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    with psycopg.connect(shop.database_url) as conn:
        counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()
                  for t in ("products", "users", "orders", "order_items")]
    assert [c[0] for c in counts if c] == [8, 2, 4, 6]


def test_the_server_drops_its_database_on_exit():
    with ShopServer(SHOP_DIR) as server:
        name = server.database
        assert request(server.url, "/health").status == 200
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres") as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None
    assert not server.running


# --- the corpus: every patch applies; the patched app imports (or, for one, must not) -----------

def tree_copy(dest: Path) -> Path:
    shutil.copytree(SHOP_DIR, dest, ignore=shutil.ignore_patterns("changes", "__pycache__"))
    return dest


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_patch_applies_and_the_app_still_imports(tmp_path, case: ChangeCase):
    tree = tree_copy(tmp_path / "shop")
    check = subprocess.run(["git", "apply", "--check", str(case.patch_path)], cwd=tree,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    if shutil.which("patch"):
        dry = subprocess.run(["patch", "-p1", "--dry-run", "-s", "-i", str(case.patch_path)],
                             cwd=tree, capture_output=True, text=True, check=False)
        assert dry.returncode == 0, dry.stdout + dry.stderr
    subprocess.run(["git", "apply", str(case.patch_path)], cwd=tree, check=True)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    compiled = subprocess.run([sys.executable, "-m", "compileall", "-q", "app"], cwd=tree, env=env,
                              capture_output=True, text=True, check=False)
    imported = subprocess.run([sys.executable, "-c", "import app.server, app.initdb, app.__main__"],
                              cwd=tree, env=env, capture_output=True, text=True, check=False)
    if case.id == "deploy-syntax-error":
        assert compiled.returncode != 0 and "SyntaxError" in compiled.stdout + compiled.stderr
        assert imported.returncode != 0 and "SyntaxError" in imported.stderr
    else:
        assert compiled.returncode == 0, compiled.stdout + compiled.stderr
        assert imported.returncode == 0, imported.stderr


# --- the corpus: what some changes do, seen from HTTP --------------------------------------------

@pytest.fixture
def patched(tmp_path):
    def start(case_id: str) -> ShopServer:
        repo = tmp_path / case_id
        materialize_repo(SHOP_DIR, CASE_BY_ID[case_id].patch_path, repo)
        return ShopServer(repo)
    return start


def test_api_500_change_breaks_only_the_product_list(patched, shop):
    with patched("api-500-products") as head:
        assert request(head.url, "/api/products").status == 500
        assert request(head.url, "/api/products/2").status == 200
        assert request(head.url, "/").body == request(shop.url, "/").body
        assert "Traceback" in head.log_text() and "rating" in head.log_text()


def test_signin_broken_change_refuses_the_right_password(patched):
    with patched("signin-broken") as head:
        reply = post_form(head.url, "/signin", {"email": "ada@example.com",
                                                "password": "analytical-engine"})
        assert reply.status == 401
        assert request(head.url, "/account", cookie=ADA).status == 200   # sessions still work


def test_account_regression_shows_only_when_signed_in(patched):
    with patched("account-orders-500") as head:
        assert request(head.url, "/account", cookie=ADA).status == 500
        assert request(head.url, "/account").status == 303
        assert request(head.url, "/api/me", cookie=ADA).json()["signed_in"] is True


def test_cart_total_wrong_and_slow_endpoint_changes(patched):
    payload = {"items": [{"product_id": 2, "quantity": 1}]}
    with patched("cart-total-wrong") as head:
        assert post_json(head.url, "/api/cart/quote", payload).json()["total"] == "$24.00"
    with patched("slow-quote-endpoint") as head:
        with pytest.raises(TimeoutError):
            post_json(head.url, "/api/cart/quote", payload, timeout=6)   # > the spec's 5 s


def test_missing_assets_are_404s(patched):
    with patched("missing-script") as head:
        assert '<script src="/static/analytics.js" defer>' in request(head.url, "/").text
        assert request(head.url, "/static/analytics.js").status == 404
    with patched("missing-image") as head:
        image = request(head.url, "/api/products").json()["products"][0]["image"]
        assert image.startswith("/static/img/products/")
        assert request(head.url, image).status == 404


def test_button_removed_change_drops_the_button(patched):
    with patched("button-removed") as head:
        html = request(head.url, "/products/2").text
        assert 'id="add-to-cart"' not in html and "Sold out" in html


def test_noop_refactor_serves_byte_identical_pages_and_json(patched, shop):
    paths = [("/", None), ("/products/2", None), ("/cart", None), ("/signin", None),
             ("/account", ADA), ("/api/products", None), ("/api/products/6", None)]
    with patched("noop-refactor") as head:
        for path, cookie in paths:
            assert request(head.url, path, cookie=cookie).body == \
                request(shop.url, path, cookie=cookie).body, path
        payload = {"items": [{"product_id": 2, "quantity": 3}, {"product_id": 99, "quantity": 1}]}
        assert post_json(head.url, "/api/cart/quote", payload).body == \
            post_json(shop.url, "/api/cart/quote", payload).body


def test_noise_changes_vary_between_renders_but_keep_working(patched, shop):
    with patched("noise-random-id") as head:
        assert request(head.url, "/").body != request(head.url, "/").body
        page = request(head.url, "/signin")
        csrf = set_cookie(page, "shop_csrf")
        assert csrf and f'name="csrf" value="{csrf}"' in page.text
        ok = post_form(head.url, "/signin", {"email": "ada@example.com",
                                             "password": "analytical-engine", "csrf": csrf},
                       cookie=f"shop_csrf={csrf}")
        assert ok.status == 303 and set_cookie(ok, "shop_session")
        forged = post_form(head.url, "/signin", {"email": "ada@example.com",
                                                 "password": "analytical-engine", "csrf": "x"},
                           cookie=f"shop_csrf={csrf}")
        assert forged.status == 403
    with patched("noise-server-time") as head:
        assert "Page rendered at 20" in request(head.url, "/").text
    with patched("noise-variable-latency") as head:
        assert request(head.url, "/api/products").body == request(shop.url, "/api/products").body
