# ruff: noqa: E501  (the edits below quote source lines verbatim, some of them long)
"""The corpus of changes to the shop, as code: rebuilds every ``<id>.patch`` and ``manifest.yml``.

Each change is a list of exact text edits to the base tree (``examples/shop/``). Editing the
base app can make an edit's ``old`` text disappear; this script then says which change and which
file, and the definitions below are the place to fix it::

    python3 examples/shop/changes/regenerate.py           # rewrite the patches and the manifest
    python3 examples/shop/changes/regenerate.py --check   # exit 1 if they are out of date

Standard library and git only. ``kinds`` are the finding kinds a correct verdict must include
(others may come with them, e.g. the browser's own "Failed to load resource" console error next
to a 404); ``flows``/``viewports``, when given, are the only places findings may appear.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHANGES_DIR = Path(__file__).resolve().parent
APP_DIR = CHANGES_DIR.parent
IGNORED = shutil.ignore_patterns("changes", "__pycache__", "*.pyc", ".git")
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Diffie corpus", "GIT_AUTHOR_EMAIL": "corpus@diffie.invalid",
    "GIT_COMMITTER_NAME": "Diffie corpus", "GIT_COMMITTER_EMAIL": "corpus@diffie.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
}


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` (which must occur exactly once) in ``path`` with ``new``."""

    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Change:
    id: str
    category: str                      # regression | noop | noise
    expected: str                      # pass | changed | fail | error
    description: str
    edits: tuple[Edit, ...]
    kinds: tuple[str, ...] = ()
    flows: tuple[str, ...] = ()        # empty: anywhere
    viewports: tuple[str, ...] = ()    # empty: anywhere
    notes: str = ""
    # a visual change: words the explanation of at least one finding must contain (the
    # element the change touched and the property; `diffie bench corpus` prints explain:)
    expect_cause: tuple[str, ...] = ()


JS = "static/app.js"
CSS = "static/style.css"
PAGES = "app/pages.py"
CATALOG = "app/catalog.py"

CHANGES: tuple[Change, ...] = (
    # --- regressions ------------------------------------------------------------------------
    Change(
        id="page-error-home", category="regression", expected="fail", kinds=("page_error",),
        flows=("home",),
        description="Wires up a 'sort by price' control on the home page whose element was never "
                    "added to the template: an uncaught TypeError after the grid has rendered.",
        edits=(Edit(JS, """    }).catch(function () {
      document.getElementById("grid-error").hidden = false;
    });
  }
""", """    }).catch(function () {
      document.getElementById("grid-error").hidden = false;
    });
    document.getElementById("sort-by-price").addEventListener("change", function (event) {
      var cards = Array.prototype.slice.call(grid.children);
      cards.sort(function (a, b) { return a.dataset.price - b.dataset.price; });
      if (event.target.value === "desc") { cards.reverse(); }
      cards.forEach(function (card) { grid.appendChild(card); });
    });
  }
"""),),
    ),
    Change(
        id="console-error-cart", category="regression", expected="fail", kinds=("console_error",),
        flows=("product",),
        description="Adds a totals sanity check to the cart that forgets shipping: every cart "
                    "with a shipping fee logs console.error.",
        edits=(Edit(JS, """    }).then(function (quote) {
      renderQuote(quote);
""", """    }).then(function (quote) {
      if (quote.total_cents !== quote.subtotal_cents) {
        console.error("cart: total " + quote.total + " does not match subtotal " + quote.subtotal);
      }
      renderQuote(quote);
"""),),
    ),
    Change(
        id="missing-script", category="regression", expected="fail", kinds=("request_failed",),
        description="Adds an analytics script tag to every page but not the file: "
                    "GET /static/analytics.js answers 404.",
        edits=(Edit(PAGES, """<script src="/static/app.js" defer></script>
""", """<script src="/static/app.js" defer></script>
<script src="/static/analytics.js" defer></script>
"""),),
    ),
    Change(
        id="missing-image", category="regression", expected="fail",
        kinds=("request_failed", "visual_change"), flows=("home", "product"),
        description="Moves product image URLs to /static/img/products/ without moving the files: "
                    "every product image is a 404 and the cards collapse.",
        edits=(
            Edit(CATALOG, """        "image": f"/static/img/{row['image']}",
        "url": f"/products/{row['id']}",""", """        "image": f"/static/img/products/{row['image']}",
        "url": f"/products/{row['id']}","""),
            Edit(PAGES, """<img src="/static/img/{esc(product["image"])}\"""",
                 """<img src="/static/img/products/{esc(product["image"])}\""""),
        ),
    ),
    Change(
        id="api-500-products", category="regression", expected="fail",
        kinds=("request_failed", "assertion_failed"), flows=("home",),
        description="Sorts the catalogue by a 'rating' column that does not exist: GET "
                    "/api/products answers 500 and the home page shows its error notice.",
        edits=(Edit(CATALOG, """FROM products p ORDER BY p.position, p.id")""",
                    """FROM products p ORDER BY p.rating DESC, p.position, p.id")"""),),
    ),
    Change(
        id="signin-broken", category="regression", expected="fail",
        kinds=("assertion_failed", "request_failed"), flows=("signin",),
        description="Raises PBKDF2 iterations to 310,000 and verifies with the new constant "
                    "instead of the stored count: no existing password matches, sign-in answers "
                    "401 and the flow never reaches /account.",
        edits=(
            Edit("app/auth.py", "ITERATIONS = 100_000", "ITERATIONS = 310_000"),
            Edit("app/auth.py", """bytes.fromhex(salt_hex),
                                     int(iterations))""", """bytes.fromhex(salt_hex),
                                     ITERATIONS)"""),
        ),
    ),
    Change(
        id="button-removed", category="regression", expected="fail",
        kinds=("step_failed", "page_error"), flows=("product",),
        description="Shows 'Add to cart' only when product['in_stock'] is true, a key the query "
                    "never returns: the button is gone (the click step fails) and the product "
                    "script throws on the missing button.",
        edits=(Edit(PAGES, """    <button id="add-to-cart" class="button primary" type="button"
            data-product-id="{esc(product["id"])}">Add to cart</button>
""", """    {buy_button(product)}
"""), Edit(PAGES, """def product_page(product: Row) -> str:
""", """def buy_button(product: Row) -> str:
    if not product.get("in_stock"):
        return '<p class="sold-out">Sold out</p>'
    return (f'<button id="add-to-cart" class="button primary" type="button" '
            f'data-product-id="{esc(product["id"])}">Add to cart</button>')


def product_page(product: Row) -> str:
""")),
    ),
    Change(
        id="layout-shift-banner", category="regression", expected="changed",
        kinds=("visual_change",),
        expect_cause=("div.banner", "padding"),
        description="Doubles the banner's vertical padding: everything below it moves down 8px "
                    "on every page.",
        edits=(Edit(CSS, """.banner {
  padding: 6px 16px;""", """.banner {
  padding: 10px 16px;"""),),
    ),
    Change(
        id="colour-change-brand", category="regression", expected="changed",
        kinds=("visual_change",),
        expect_cause=("color", "rgb(194, 87, 26)"),
        description="Changes the brand colour from green to orange: links, buttons and "
                    "the cart status change colour.",
        edits=(Edit(CSS, """  --brand: #2f6f4f;
  --brand-dark: #24573e;""", """  --brand: #c2571a;
  --brand-dark: #9c4414;"""),),
    ),
    Change(
        id="mobile-overflow-banner", category="regression", expected="changed",
        kinds=("visual_change",), viewports=("mobile",),
        expect_cause=("div.banner", "white-space"),
        description="Keeps the banner on one line (white-space: nowrap): it fits at 1280px but "
                    "overflows the 390px mobile viewport.",
        edits=(Edit(CSS, """.banner {
  padding: 6px 16px;
  font-size: 13px;""", """.banner {
  padding: 6px 16px;
  font-size: 13px;
  white-space: nowrap;"""),),
    ),
    Change(
        id="copy-change-button", category="regression", expected="changed",
        kinds=("visual_change",), flows=("product",),
        expect_cause=("Add to bag",),
        description="Renames the 'Add to cart' button to 'Add to bag' (same id): a visible "
                    "text change only.",
        edits=(Edit(PAGES, """data-product-id="{esc(product["id"])}">Add to cart</button>""",
                    """data-product-id="{esc(product["id"])}">Add to bag</button>"""),),
    ),
    Change(
        id="cart-total-wrong", category="regression", expected="fail",
        kinds=("assertion_failed",), flows=("product",),
        description="Writes the free-shipping threshold in dollars instead of cents: every cart "
                    "ships free and the total is $24.00 instead of $28.95.",
        edits=(Edit("app/money.py", "FREE_SHIPPING_FROM_CENTS = 5000",
                    "FREE_SHIPPING_FROM_CENTS = 50"),),
    ),
    Change(
        id="slow-quote-endpoint", category="regression", expected="fail",
        kinds=("assertion_failed",), flows=("product",),
        description="Adds a synchronous 'warehouse' stock check to POST /api/cart/quote that "
                    "takes 12 s, longer than the spec's 5 s step timeout: the cart total never "
                    "appears in time.",
        edits=(
            Edit("app/api.py", """from typing import Any
""", """import time
from typing import Any
"""),
            Edit("app/api.py", """        return 400, {"error": str(exc)}
    return 200, catalog.quote(db, items)""", """        return 400, {"error": str(exc)}
    reserve_stock(items)
    return 200, catalog.quote(db, items)


def reserve_stock(items: list[tuple[int, int]]) -> None:
    \"\"\"Ask the warehouse to hold the items (its API takes a while under load).\"\"\"
    time.sleep(12)"""),
        ),
    ),
    Change(
        id="deploy-syntax-error", category="regression", expected="fail", kinds=("deploy_error",),
        description="A Python syntax error (a missing colon) in app/catalog.py: the server cannot "
                    "start, so the deploy fails (compileall exits 1, /health never answers).",
        edits=(Edit(CATALOG, """    if stock < 5:
        return f"Only {stock} left\"""", """    if stock < 5
        return f"Only {stock} left\""""),),
    ),
    Change(
        id="account-orders-500", category="regression", expected="fail",
        kinds=("request_failed", "assertion_failed"), flows=("signin", "account"),
        description="Orders the order history by a 'created_at' column that does not exist: "
                    "/account answers 500, which only signed-in users ever see.",
        edits=(Edit(CATALOG, "ORDER BY o.placed_on DESC, o.id DESC",
                    "ORDER BY o.created_at DESC, o.id DESC"),),
    ),
    # --- changes a person sees that a renderer tolerance would hide (issue 10) ------------------
    Change(
        id="hue-shift-brand", category="regression", expected="changed", kinds=("visual_change",),
        expect_cause=("color", "rgb(47, 95, 127)"),
        description="Recolours the brand from green (47,111,79) to a slate blue of almost the "
                    "same lightness (47,95,127): links, buttons and the cart status (ΔE00 28, "
                    "but a YIQ delta of 150, under pixelmatch's 0.1 allowance of 352).",
        edits=(Edit(CSS, "  --brand: #2f6f4f;", "  --brand: #2f5f7f;"),),
    ),
    Change(
        id="subtle-background", category="regression", expected="changed",
        kinds=("visual_change",),
        expect_cause=("body", "background-color"),
        description="Warms the page background from #f5f7fa to #f8f6f1 (ΔE00 4.2): every page.",
        edits=(Edit(CSS, "  --wash: #f5f7fa;", "  --wash: #f8f6f1;"),),
    ),
    Change(
        id="subtle-border", category="regression", expected="changed", kinds=("visual_change",),
        expect_cause=("product-card", "border-top-color"),
        description="Turns the 1px hairlines (header, cards, forms, tables) from #dfe3ea to a "
                    "neutral #e3e3e3 (ΔE00 3.6).",
        edits=(Edit(CSS, "  --line: #dfe3ea;", "  --line: #e3e3e3;"),),
    ),
    Change(
        id="subtle-text-colour", category="regression", expected="changed",
        kinds=("visual_change",),
        expect_cause=("body", "color"),
        description="Shifts the body text colour from #1d2433 to #252433 (ΔE00 4.3).",
        edits=(Edit(CSS, "  --ink: #1d2433;", "  --ink: #252433;"),),
    ),
    Change(
        id="subtle-button", category="regression", expected="changed", kinds=("visual_change",),
        expect_cause=("button", "background-color"),
        flows=("product", "signin"),
        description="Gives primary buttons their own green, #2f754a instead of the brand "
                    "#2f6f4f (ΔE00 3.5); links keep the brand colour.",
        edits=(Edit(CSS, ".button.primary { color: #ffffff; background: var(--brand); }",
                    ".button.primary { color: #ffffff; background: #2f754a; }"),),
    ),
    Change(
        id="spacing-1px-grid", category="regression", expected="changed",
        kinds=("visual_change",), flows=("home",),
        expect_cause=("#product-grid", "gap"),
        description="Widens the product grid's gap from 20px to 21px: the cards move by 1px.",
        edits=(Edit(CSS, """  gap: 20px;
  min-height: 300px;""", """  gap: 21px;
  min-height: 300px;"""),),
    ),
    Change(
        id="font-weight-price", category="regression", expected="changed",
        kinds=("visual_change",), flows=("home",),
        expect_cause=("price", "font-weight"),
        description="Sets the product cards' prices in normal weight instead of bold.",
        edits=(Edit(CSS, ".product-card .price { margin: 0; font-weight: bold; }",
                    ".product-card .price { margin: 0; font-weight: normal; }"),),
    ),
    Change(
        id="opacity-card-summary", category="regression", expected="changed",
        kinds=("visual_change",), flows=("home",),
        expect_cause=("summary", "opacity"),
        description="Fades the product cards' one-line summaries to 85% opacity.",
        edits=(Edit(CSS, ".product-card .summary { margin: 0 0 8px; font-size: 13px; color: var(--muted); }",
                    ".product-card .summary { margin: 0 0 8px; font-size: 13px; color: var(--muted); opacity: 0.85; }"),),
    ),
    Change(
        id="csp-inline-style", category="regression", expected="fail", kinds=("console_error",),
        description="Adds a strict Content-Security-Policy header and, in the same change, an "
                    "inline <style> in the page head: the policy blocks the app's own style "
                    "(the browser reports the violation on every page).",
        edits=(Edit("app/server.py", """        self.send_header("Cache-Control", "no-store")
""", """        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", "default-src 'self'")
"""), Edit(PAGES, """<link rel="stylesheet" href="/static/style.css">""",
                   """<link rel="stylesheet" href="/static/style.css">
<style>.banner {{ letter-spacing: 0.2px; }}</style>""")),
    ),
    # --- changes a user cannot see ----------------------------------------------------------
    Change(
        id="noop-refactor", category="noop", expected="pass",
        description="Refactors cart pricing (a helper per line, sum() for the subtotal) and the "
                    "client cart (Array.find, a shared total helper). Same HTML, JSON and pixels.",
        edits=(
            Edit(CATALOG, """    lines = []
    unknown = []
    subtotal = 0
    for pid, qty in items:
        row = rows.get(pid)
        if row is None:
            unknown.append(pid)
            continue
        line_total = row["price_cents"] * qty
        subtotal += line_total
        lines.append({
            "product_id": pid,
            "name": row["name"],
            "image": f"/static/img/{row['image']}",
            "quantity": qty,
            "unit_price_cents": row["price_cents"],
            "unit_price": format_cents(row["price_cents"]),
            "line_total_cents": line_total,
            "line_total": format_cents(line_total),
        })
    shipping = shipping_for(subtotal)""", """    lines = [_quote_line(rows[pid], qty) for pid, qty in items if pid in rows]
    unknown = [pid for pid, _ in items if pid not in rows]
    subtotal = sum(line["line_total_cents"] for line in lines)
    shipping = shipping_for(subtotal)"""),
            Edit(CATALOG, """def orders_for(""", """def _quote_line(row: Row, qty: int) -> dict[str, Any]:
    line_total = row["price_cents"] * qty
    return {
        "product_id": row["id"],
        "name": row["name"],
        "image": f"/static/img/{row['image']}",
        "quantity": qty,
        "unit_price_cents": row["price_cents"],
        "unit_price": format_cents(row["price_cents"]),
        "line_total_cents": line_total,
        "line_total": format_cents(line_total),
    }


def orders_for("""),
            Edit(JS, """    var found = items.filter(function (item) { return item.product_id === productId; })[0];
""", """    var found = items.find(function (item) { return item.product_id === productId; });
"""),
            Edit(JS, """  function cartCount() {
    return readCart().reduce(function (sum, item) { return sum + item.quantity; }, 0);
  }""", """  function sumOf(items, key) {
    return items.reduce(function (sum, item) { return sum + item[key]; }, 0);
  }

  function cartCount() {
    return sumOf(readCart(), "quantity");
  }"""),
        ),
    ),
    Change(
        id="noop-comment", category="noop", expected="pass",
        description="Adds comments to Python, JavaScript, CSS and SQL, and an HTML comment in the "
                    "page head. Nothing a user can see.",
        edits=(
            Edit("app/money.py", """def shipping_for(subtotal_cents: int) -> int:
""", """def shipping_for(subtotal_cents: int) -> int:
    # An empty cart ships nothing, so it costs nothing either.
"""),
            Edit(JS, """  var CART_KEY = "shop.cart";
""", """  // The cart lives in localStorage as [{product_id, quantity}]; prices always come from
  // the server (POST /api/cart/quote), never from what the browser stored.
  var CART_KEY = "shop.cart";
"""),
            Edit(CSS, """.product-grid {
""", """/* Cards: at least 220px wide; as many columns as fit (two on phones, see below). */
.product-grid {
"""),
            Edit(PAGES, """<link rel="stylesheet" href="/static/style.css">
""", """<link rel="stylesheet" href="/static/style.css">
<!-- app.js is deferred: it runs after the document is parsed, in order. -->
"""),
            Edit("db/schema.sql", """CREATE TABLE IF NOT EXISTS sessions (
""", """-- A session is a random token in the shop_session cookie; signing out deletes the row.
CREATE TABLE IF NOT EXISTS sessions (
"""),
        ),
    ),
    Change(
        id="noop-css-rewrite", category="noop", expected="pass",
        description="Rewrites style rules to the same computed result: #ffffff as #fff and "
                    "white, bold as 700, gap as row-gap + column-gap, shorthands spelled out.",
        edits=(
            Edit(CSS, "  --paper: #ffffff;", "  --paper: white;"),
            Edit(CSS, """  padding: 6px 16px;
  font-size: 13px;
  text-align: center;
  color: #ffffff;""", """  padding: 6px 16px 6px 16px;
  font-size: 13px;
  text-align: center;
  color: #fff;"""),
            Edit(CSS, """  font-size: 20px;
  font-weight: bold;
  color: var(--ink);""", """  font-size: 20px;
  font-weight: 700;
  color: var(--ink);"""),
            Edit(CSS, """.nav { display: flex; gap: 18px; }
.nav a { text-decoration: none; font-weight: bold; }""", """.nav {
  display: flex;
  row-gap: 18px;
  column-gap: 18px;
}

.nav a {
  font-weight: 700;
  text-decoration-line: none;
}"""),
            Edit(CSS, """.container {
  max-width: 1080px;
  margin: 0 auto;
  padding: 24px;
}""", """.container {
  max-width: 1080px;
  margin-top: 0;
  margin-right: auto;
  margin-bottom: 0;
  margin-left: auto;
  padding: 24px 24px;
}"""),
            Edit(CSS, "h1 { margin: 0 0 12px; font-size: 28px; line-height: 1.2; }",
                 "h1 { margin: 0px 0px 12px 0px; font-size: 28px; line-height: 1.2; }"),
            Edit(CSS, ".button.primary { color: #ffffff; background: var(--brand); }",
                 ".button.primary { color: rgb(255, 255, 255); background-color: var(--brand); }"),
            Edit(CSS, ".button:disabled { opacity: 0.5; cursor: not-allowed; }",
                 ".button:disabled { opacity: .5; cursor: not-allowed; }"),
        ),
    ),
    # --- noise: must not become findings ----------------------------------------------------
    Change(
        id="noop-strict-csp", category="noop", expected="pass",
        description="Sends a strict Content-Security-Policy (default-src 'self') with every "
                    "response. The shop has no inline script or style, so nothing changes for "
                    "a user, and Diffie's own instrumentation must not trip the policy.",
        edits=(Edit("app/server.py", """        self.send_header("Cache-Control", "no-store")
""", """        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", "default-src 'self'; base-uri 'none'; "
                         "form-action 'self'; frame-ancestors 'none'")
"""),),
    ),
    Change(
        id="noise-server-time", category="noise", expected="pass",
        description="Renders the server's current time (to the second) under the footer, and "
                    "masks it in .diffie.yml (masks: [.rendered-at]), as a team would.",
        notes="Passes when masks cover the union of the masked boxes of base and head "
              "(base has no such element) and the head's .diffie.yml is the one used.",
        edits=(
            Edit(PAGES, """import datetime as dt
from html import escape""", """import datetime as dt
from datetime import timezone
from html import escape"""),
            Edit(PAGES, """</footer>
</body>""", """</footer>
<p class="rendered-at">Page rendered at {dt.datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC</p>
</body>"""),
            Edit(CSS, """@media (max-width: 640px) {""", """.rendered-at {
  max-width: 1080px;
  margin: 0 auto;
  padding: 0 24px 24px;
  font-size: 12px;
  color: var(--muted);
}

@media (max-width: 640px) {"""),
            Edit(".diffie.yml", """timeout_ms: 5000            # per step; the slow-endpoint change in changes/ sleeps longer
""", """timeout_ms: 5000            # per step; the slow-endpoint change in changes/ sleeps longer
masks: [".rendered-at"]     # the server's clock: different on every render
"""),
        ),
    ),
    Change(
        id="noise-random-id", category="noise", expected="pass",
        description="Puts a random request id in every page (<meta> and a body attribute) and a "
                    "random CSRF token in the sign-in form, checked against a cookie on POST.",
        edits=(
            Edit(PAGES, """import datetime as dt
from html import escape""", """import datetime as dt
import secrets
from html import escape"""),
            Edit(PAGES, """<meta name="viewport" content="width=device-width, initial-scale=1">
<title>""", """<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="request-id" content="{secrets.token_hex(8)}">
<title>"""),
            Edit(PAGES, """<body data-page="{esc(page)}">""",
                 """<body data-page="{esc(page)}" data-render-id="{secrets.token_hex(6)}">"""),
            Edit(PAGES, """def signin_page(*, email: str = "", error: str = "", next_path: str = "/account") -> str:
""", """def signin_page(*, email: str = "", error: str = "", next_path: str = "/account",
                csrf: str = "") -> str:
"""),
            Edit(PAGES, """    <input type="hidden" name="next" value="{esc(next_path)}">
""", """    <input type="hidden" name="next" value="{esc(next_path)}">
    <input type="hidden" name="csrf" value="{esc(csrf)}">
"""),
            Edit("app/server.py", """import re
import sys""", """import re
import secrets
import sys"""),
            Edit("app/server.py", """        elif path == "/signin":
            self.send_html(200, pages.signin_page(next_path=self.next_path()))""",
                 """        elif path == "/signin":
            csrf = secrets.token_urlsafe(16)
            cookie = f"shop_csrf={csrf}; Path=/signin; HttpOnly; SameSite=Strict"
            self.send_html(200, pages.signin_page(next_path=self.next_path(), csrf=csrf),
                           [("Set-Cookie", cookie)])"""),
            Edit("app/server.py", """        next_path = self.next_path(form.get("next", ["/account"])[0])
""", """        next_path = self.next_path(form.get("next", ["/account"])[0])
        expected_csrf = read_cookie(self.headers.get("Cookie"), "shop_csrf")
        if not expected_csrf or form.get("csrf", [""])[0] != expected_csrf:
            self.send_html(403, pages.signin_page(email=email, next_path=next_path,
                                                  error="The form expired. Please try again."))
            return
"""),
        ),
    ),
    Change(
        id="noise-client-clock-random", category="noise", expected="pass",
        description="Client code uses Date.now() and Math.random(): a cache-busting query and a "
                    "random X-Request-Id on API calls, skeleton cards of random width while the "
                    "catalogue loads, a load-time console.log, a priced-at timestamp attribute.",
        edits=(
            Edit(JS, """  function getJSON(url, options) {
    return fetch(url, options).then(function (response) {""", """  function getJSON(url, options) {
    options = options || {};
    options.headers = Object.assign({}, options.headers,
      { "X-Request-Id": Math.random().toString(36).slice(2, 10) });
    return fetch(url, options).then(function (response) {"""),
            Edit(JS, """  function initHome() {
    var grid = document.getElementById("product-grid");
    getJSON("/api/products").then(function (data) {
      data.products.forEach(function (product) { grid.appendChild(productCard(product)); });
    }).catch(function () {
      document.getElementById("grid-error").hidden = false;
    });
  }""", """  function skeletons(grid, count) {
    for (var i = 0; i < count; i++) {
      var bone = el("div", { "class": "product-card skeleton" });
      bone.style.width = Math.round(70 + Math.random() * 30) + "%";
      grid.appendChild(bone);
    }
  }

  function initHome() {
    var grid = document.getElementById("product-grid");
    var started = Date.now();
    skeletons(grid, 4);
    getJSON("/api/products?_=" + Date.now()).then(function (data) {
      grid.textContent = "";
      data.products.forEach(function (product) { grid.appendChild(productCard(product)); });
      console.log("catalogue: " + data.products.length + " products in " +
        (Date.now() - started) + " ms");
    }).catch(function () {
      grid.textContent = "";
      document.getElementById("grid-error").hidden = false;
    });
  }"""),
            Edit(JS, """      renderQuote(quote);
      cart.setAttribute("data-state", "ready");""", """      renderQuote(quote);
      cart.setAttribute("data-state", "ready");
      cart.setAttribute("data-priced-at", new Date().toISOString());"""),
            Edit(CSS, """.product-card a {""", """.product-card.skeleton { height: 300px; background: var(--line); }

.product-card a {"""),
        ),
    ),
    Change(
        id="noise-animation-spinner", category="noise", expected="pass",
        description="Adds a spinning loader (infinite CSS animation) while the catalogue and the "
                    "cart load, and a fade-in animation on product cards and the cart status.",
        edits=(
            Edit(PAGES, """<div id="product-grid" class="product-grid" aria-live="polite"></div>""",
                 """<div id="grid-spinner" class="spinner" role="progressbar" aria-label="Loading"></div>
<div id="product-grid" class="product-grid" aria-live="polite"></div>"""),
            Edit(PAGES, """<div id="cart" class="cart" data-state="loading">
""", """<div id="cart" class="cart" data-state="loading">
  <div id="cart-spinner" class="spinner" role="progressbar" aria-label="Pricing your cart"></div>
"""),
            Edit(JS, """    getJSON("/api/products").then(function (data) {
      data.products.forEach(function (product) { grid.appendChild(productCard(product)); });
    }).catch(function () {
      document.getElementById("grid-error").hidden = false;
    });""", """    var spinner = document.getElementById("grid-spinner");
    getJSON("/api/products").then(function (data) {
      spinner.hidden = true;
      data.products.forEach(function (product) { grid.appendChild(productCard(product)); });
    }).catch(function () {
      spinner.hidden = true;
      document.getElementById("grid-error").hidden = false;
    });"""),
            Edit(JS, """    var cart = document.getElementById("cart");
    var items = readCart();""", """    var cart = document.getElementById("cart");
    var spinner = document.getElementById("cart-spinner");
    var items = readCart();
    spinner.hidden = items.length === 0;"""),
            Edit(JS, """    }).then(function (quote) {
      renderQuote(quote);""", """    }).then(function (quote) {
      spinner.hidden = true;
      renderQuote(quote);"""),
            Edit(JS, """    }).catch(function () {
      document.getElementById("cart-error").hidden = false;""", """    }).catch(function () {
      spinner.hidden = true;
      document.getElementById("cart-error").hidden = false;"""),
            Edit(CSS, """@media (max-width: 640px) {""", """@keyframes spin { to { transform: rotate(360deg); } }
@keyframes fade-in { from { opacity: 0; transform: translateY(8px); } to { opacity: 1; transform: none; } }

.spinner {
  width: 32px;
  height: 32px;
  margin: 24px auto;
  border: 4px solid var(--line);
  border-top-color: var(--brand);
  border-radius: 50%;
  animation: spin 0.8s linear infinite;
}

.spinner[hidden] { display: none; }
.product-card { animation: fade-in 0.4s ease-out both; }
.cart-status:not(:empty) { animation: fade-in 0.3s ease-out both; }

@media (max-width: 640px) {"""),
        ),
    ),
    Change(
        id="noise-lazy-image", category="noise", expected="pass",
        description="Loads product images lazily (loading=lazy, decoding=async) on the grid and "
                    "the product page; width/height keep the layout the same.",
        edits=(
            Edit(JS, """        el("img", { src: product.image, alt: "", width: "320", height: "240" }),""",
                 """        el("img", { src: product.image, alt: "", width: "320", height: "240",
                    loading: "lazy", decoding: "async" }),"""),
            Edit(PAGES, """alt="{esc(product["name"])}" width="480" height="360">""",
                 """alt="{esc(product["name"])}" width="480" height="360"
         loading="lazy" decoding="async">"""),
        ),
    ),
    Change(
        id="noise-web-font", category="noise", expected="pass",
        description="Serves the text font as a web font (static/fonts/, a Latin subset of DejaVu "
                    "Sans, font-display: block): the same glyphs, once the font has loaded.",
        notes="Pixel-identical to the system DejaVu Sans in Chromium once loaded; before that, "
              "font-display: block leaves the text invisible.",
        edits=(
            Edit(CSS, """:root {
""", """@font-face {
  font-family: "Shop Sans";
  src: url("/static/fonts/shop-sans.woff2") format("woff2");
  font-weight: 400;
  font-display: block;
}

@font-face {
  font-family: "Shop Sans";
  src: url("/static/fonts/shop-sans-bold.woff2") format("woff2");
  font-weight: 700;
  font-display: block;
}

:root {
"""),
            Edit(CSS, """  --font: "DejaVu Sans", "Liberation Sans", Arial, sans-serif;""",
                 """  --font: "Shop Sans", "DejaVu Sans", "Liberation Sans", Arial, sans-serif;"""),
        ),
    ),
    Change(
        id="noise-variable-latency", category="noise", expected="pass",
        description="The JSON API answers after a random 0-300 ms (a cache that sometimes "
                    "misses): same responses, varying timing.",
        edits=(
            Edit("app/api.py", """from typing import Any
""", """import random
import time
from typing import Any
"""),
            Edit("app/api.py", """Response = tuple[int, dict[str, Any]]
""", """Response = tuple[int, dict[str, Any]]


def cache_latency() -> None:
    \"\"\"The read-through cache: a miss costs a trip to the catalogue service.\"\"\"
    time.sleep(random.uniform(0.0, 0.3))
"""),
            Edit("app/api.py", """def products(db: Database) -> Response:
""", """def products(db: Database) -> Response:
    cache_latency()
"""),
            Edit("app/api.py", """def product(db: Database, product_id: int) -> Response:
""", """def product(db: Database, product_id: int) -> Response:
    cache_latency()
"""),
            Edit("app/api.py", """        return 400, {"error": str(exc)}
    return 200, catalog.quote(db, items)""", """        return 400, {"error": str(exc)}
    cache_latency()
    return 200, catalog.quote(db, items)"""),
            Edit("app/api.py", """def me(db: Database, token: str | None) -> Response:
""", """def me(db: Database, token: str | None) -> Response:
    cache_latency()
"""),
        ),
    ),
)


# --- building ---------------------------------------------------------------------------------

def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(["git", "-c", "core.quotepath=off", *args], cwd=repo, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def apply_edits(tree: Path, change: Change) -> None:
    for edit in change.edits:
        path = tree / edit.path
        text = path.read_text(encoding="utf-8")
        count = text.count(edit.old)
        if count != 1:
            raise SystemExit(f"{change.id}: {edit.path}: the text to replace occurs {count} times "
                             f"(needs exactly once): {edit.old[:80]!r}")
        path.write_text(text.replace(edit.old, edit.new), encoding="utf-8")


def build_patches() -> dict[str, str]:
    """``{change id: patch text}``, each a ``git diff`` of the base tree (a/ b/ prefixes)."""
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="shop-corpus-") as tmp:
        tree = Path(tmp) / "shop"
        shutil.copytree(APP_DIR, tree, ignore=IGNORED)
        _git(tree, "init", "-q")
        _git(tree, "add", "-A")
        _git(tree, "commit", "-q", "-m", "base")
        for change in CHANGES:
            _git(tree, "reset", "-q", "--hard")
            _git(tree, "clean", "-q", "-fdx")
            apply_edits(tree, change)
            _git(tree, "add", "-A")
            out[change.id] = _git(tree, "diff", "--cached", "--no-color", "--no-ext-diff",
                                  "--no-renames", "--full-index")
            if not out[change.id]:
                raise SystemExit(f"{change.id}: the edits change nothing")
    return out


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)   # a JSON string is a YAML double-quoted scalar


def render_manifest() -> str:
    lines = [
        "# The corpus of changes to examples/shop (generated by regenerate.py: edit it there).",
        "#",
        "# Each change: a patch relative to examples/shop/ (git apply / patch -p1), the verdict a",
        "# correct Diffie gives it, and the finding kinds that verdict must include (others may",
        "# come along: a 404 also logs the browser's own console error). `flows`/`viewports`,",
        "# when present, are the only places findings may appear. No-op and noise changes must",
        "# pass with zero findings.",
        "version: 1",
        "changes:",
    ]
    for c in CHANGES:
        lines.append(f"  - id: {c.id}")
        lines.append(f"    patch: {c.id}.patch")
        lines.append(f"    category: {c.category}")
        lines.append(f"    expected: {c.expected}")
        lines.append(f"    kinds: [{', '.join(c.kinds)}]")
        if c.flows:
            lines.append(f"    flows: [{', '.join(c.flows)}]")
        if c.viewports:
            lines.append(f"    viewports: [{', '.join(c.viewports)}]")
        lines.append(f"    description: {_q(c.description)}")
        if c.notes:
            lines.append(f"    notes: {_q(c.notes)}")
        if c.expect_cause:
            lines.append(f"    expect_cause: [{', '.join(_q(w) for w in c.expect_cause)}]")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report files that differ")
    args = parser.parse_args(argv)
    wanted = {f"{cid}.patch": text for cid, text in build_patches().items()}
    wanted["manifest.yml"] = render_manifest()
    stale = [name for name, text in wanted.items()
             if not (CHANGES_DIR / name).is_file()
             or (CHANGES_DIR / name).read_text(encoding="utf-8") != text]
    orphans = sorted(p.name for p in CHANGES_DIR.glob("*.patch") if p.name not in wanted)
    if args.check:
        for name in stale + orphans:
            print(f"out of date: {name}", file=sys.stderr)
        return 1 if stale or orphans else 0
    for name in stale:
        (CHANGES_DIR / name).write_text(wanted[name], encoding="utf-8")
    for name in orphans:
        (CHANGES_DIR / name).unlink()
    print(f"{len(CHANGES)} changes; wrote {len(stale)} file(s), removed {len(orphans)}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
