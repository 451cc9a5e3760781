"""Products, carts and orders: the queries behind the pages and the API."""

from __future__ import annotations

from typing import Any

from app.db import Database, Row
from app.money import format_cents, shipping_for

PRODUCT_COLUMNS = "p.id, p.slug, p.name, p.summary, p.description, p.price_cents, p.stock, p.image"
MAX_QUANTITY = 99


class QuoteError(ValueError):
    """The cart sent to /api/cart/quote is malformed."""


def list_products(db: Database) -> list[Row]:
    return db.all(f"SELECT {PRODUCT_COLUMNS} FROM products p ORDER BY p.position, p.id")


def get_product(db: Database, product_id: int) -> Row | None:
    return db.one(f"SELECT {PRODUCT_COLUMNS} FROM products p WHERE p.id = %s", (product_id,))


def product_json(row: Row, *, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "slug": row["slug"],
        "name": row["name"],
        "summary": row["summary"],
        "price_cents": row["price_cents"],
        "price": format_cents(row["price_cents"]),
        "image": f"/static/img/{row['image']}",
        "url": f"/products/{row['id']}",
    }
    if detail:
        out["description"] = row["description"]
        out["stock"] = row["stock"]
        out["availability"] = availability(row["stock"])
    return out


def availability(stock: int) -> str:
    if stock <= 0:
        return "Out of stock"
    if stock < 5:
        return f"Only {stock} left"
    return "In stock"


def parse_items(payload: Any) -> list[tuple[int, int]]:
    """``{"items": [{"product_id": 2, "quantity": 1}, ...]}`` -> ``[(2, 1), ...]`` (merged)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
        raise QuoteError("expected a JSON object with an 'items' list")
    merged: dict[int, int] = {}
    for i, item in enumerate(payload["items"]):
        if not isinstance(item, dict):
            raise QuoteError(f"items[{i}] must be an object")
        pid, qty = item.get("product_id"), item.get("quantity", 1)
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise QuoteError(f"items[{i}].product_id must be a positive integer")
        if not isinstance(qty, int) or isinstance(qty, bool) or not 1 <= qty <= MAX_QUANTITY:
            raise QuoteError(f"items[{i}].quantity must be an integer from 1 to {MAX_QUANTITY}")
        merged[pid] = min(MAX_QUANTITY, merged.get(pid, 0) + qty)
    return list(merged.items())


def quote(db: Database, items: list[tuple[int, int]]) -> dict[str, Any]:
    ids = [pid for pid, _ in items]
    rows = {r["id"]: r for r in db.all(
        f"SELECT {PRODUCT_COLUMNS} FROM products p WHERE p.id = ANY(%s)", (ids,))} if ids else {}
    lines = []
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
    shipping = shipping_for(subtotal)
    total = subtotal + shipping
    return {
        "lines": lines,
        "unknown_product_ids": unknown,
        "count": sum(line["quantity"] for line in lines),
        "subtotal_cents": subtotal,
        "shipping_cents": shipping,
        "total_cents": total,
        "subtotal": format_cents(subtotal),
        "shipping": format_cents(shipping) if shipping else "Free",
        "total": format_cents(total),
        "currency": "USD",
    }


def orders_for(db: Database, user_id: int) -> list[Row]:
    return db.all(
        "SELECT o.id, o.placed_on, o.status,"
        " COALESCE(SUM(i.quantity), 0)::int AS items,"
        " COALESCE(SUM(i.quantity * i.unit_price_cents), 0)::int AS total_cents"
        " FROM orders o LEFT JOIN order_items i ON i.order_id = o.id"
        " WHERE o.user_id = %s GROUP BY o.id ORDER BY o.placed_on DESC, o.id DESC", (user_id,))
