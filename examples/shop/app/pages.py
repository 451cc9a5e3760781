"""Server-rendered HTML. Every value from the database or the request goes through ``esc``.

Rendering is deterministic: no clock, no random ids, so two renders of one state are identical.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from app.catalog import availability
from app.db import Row
from app.money import format_cents

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
SITE_NAME = "Diffie Shop"


def esc(value: Any) -> str:
    return escape(str(value), quote=True)


def format_date(day: dt.date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def layout(title: str, body: str, *, page: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · {SITE_NAME}</title>
<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/style.css">
<script src="/static/app.js" defer></script>
</head>
<body data-page="{esc(page)}">
<div class="banner">Free shipping on orders over $50 · 30-day returns · Questions? help@shop.example</div>
<header class="site-header">
  <a class="brand" href="/"><img src="/static/img/logo.svg" alt="" width="28" height="28"> {SITE_NAME}</a>
  <nav class="nav" aria-label="Main">
    <a id="nav-products" href="/">Products</a>
    <a id="nav-cart" href="/cart">Cart (<span id="cart-count">0</span>)</a>
    <a id="nav-account" href="/signin">Sign in</a>
  </nav>
</header>
<main class="container">
{body}
</main>
<footer class="site-footer">
  <span>© 2025 {SITE_NAME}</span>
  <span>A sample app for Diffie</span>
</footer>
</body>
</html>
"""


def home_page() -> str:
    body = """<section class="intro">
  <h1>Products</h1>
  <p>Small things for people who ship software. Every order ships within two days.</p>
</section>
<div id="product-grid" class="product-grid" aria-live="polite"></div>
<p id="grid-error" class="notice error" hidden>We couldn't load the products. Please try again.</p>
<noscript><p class="notice">This catalogue needs JavaScript.</p></noscript>"""
    return layout("Products", body, page="home")


def product_page(product: Row) -> str:
    body = f"""<nav class="breadcrumb" aria-label="Breadcrumb">
  <a href="/">Products</a> / <span>{esc(product["name"])}</span>
</nav>
<article class="product-detail" data-product-id="{esc(product["id"])}">
  <div class="product-image">
    <img src="/static/img/{esc(product["image"])}" alt="{esc(product["name"])}" width="480" height="360">
  </div>
  <div class="product-info">
    <h1>{esc(product["name"])}</h1>
    <p class="price">{esc(format_cents(product["price_cents"]))}</p>
    <p class="summary">{esc(product["summary"])}</p>
    <p class="description">{esc(product["description"])}</p>
    <p id="stock" class="stock">{esc(availability(product["stock"]))}</p>
    <button id="add-to-cart" class="button primary" type="button"
            data-product-id="{esc(product["id"])}">Add to cart</button>
    <p id="cart-status" class="cart-status" role="status"></p>
  </div>
</article>"""
    return layout(product["name"], body, page="product")


def cart_page() -> str:
    body = """<h1>Your cart</h1>
<div id="cart" class="cart" data-state="loading">
  <p id="cart-empty" class="notice" hidden>Your cart is empty. <a href="/">Browse products</a></p>
  <p id="cart-error" class="notice error" hidden>We couldn't price your cart. Please try again.</p>
  <table id="cart-lines" class="cart-lines" hidden>
    <thead>
      <tr><th scope="col">Product</th><th scope="col">Qty</th><th scope="col">Price</th>
        <th scope="col"></th></tr>
    </thead>
    <tbody></tbody>
  </table>
  <dl id="cart-summary" class="cart-summary" hidden>
    <dt>Subtotal</dt><dd id="cart-subtotal"></dd>
    <dt>Shipping</dt><dd id="cart-shipping"></dd>
  </dl>
  <p id="cart-total" class="cart-total"></p>
  <button id="checkout" class="button primary" type="button" disabled>Checkout</button>
</div>"""
    return layout("Cart", body, page="cart")


def signin_page(*, email: str = "", error: str = "", next_path: str = "/account") -> str:
    error_html = f'<p id="signin-error" class="notice error">{esc(error)}</p>' if error else ""
    body = f"""<section class="auth">
  <h1>Sign in</h1>
  {error_html}
  <form id="signin-form" class="form" method="post" action="/signin">
    <input type="hidden" name="next" value="{esc(next_path)}">
    <label for="email">Email</label>
    <input id="email" name="email" type="email" autocomplete="username" required value="{esc(email)}">
    <label for="password">Password</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required>
    <button id="signin-submit" class="button primary" type="submit">Sign in</button>
  </form>
  <p class="hint">Demo account: ada@example.com / analytical-engine</p>
</section>"""
    return layout("Sign in", body, page="signin")


def order_row(order: Row) -> str:
    items = f'{order["items"]} item{"" if order["items"] == 1 else "s"}'
    status = order["status"]
    cells = [
        f'<a href="#order-{esc(order["id"])}">#{esc(order["id"])}</a>',
        esc(format_date(order["placed_on"])),
        f'<span class="status status-{esc(status)}">{esc(status.title())}</span>',
        esc(items),
    ]
    total = esc(format_cents(order["total_cents"]))
    return ("      <tr>" + "".join(f"<td>{cell}</td>" for cell in cells)
            + f'<td class="num">{total}</td></tr>')


def account_page(user: Row, orders: list[Row]) -> str:
    if orders:
        rows = "\n".join(order_row(order) for order in orders)
        orders_html = f"""<table id="orders" class="orders">
    <thead>
      <tr><th scope="col">Order</th><th scope="col">Placed</th><th scope="col">Status</th>
        <th scope="col">Items</th><th scope="col" class="num">Total</th></tr>
    </thead>
    <tbody>
{rows}
    </tbody>
  </table>"""
    else:
        orders_html = '<p id="orders" class="notice">No orders yet.</p>'
    body = f"""<section class="account">
  <h1>{esc(user["name"])}</h1>
  <p class="muted">Signed in as {esc(user["email"])} · <a id="signout" href="/signout">Sign out</a></p>
  <h2>Order history</h2>
  {orders_html}
</section>"""
    return layout("Your account", body, page="account")


def not_found_page() -> str:
    body = """<h1>Page not found</h1>
<p>There is nothing here. <a href="/">Back to the products</a></p>"""
    return layout("Not found", body, page="error")


def error_page() -> str:
    body = """<h1>Something went wrong</h1>
<p>We are looking into it. <a href="/">Back to the products</a></p>"""
    return layout("Error", body, page="error")
