"""The JSON API the pages call: products, cart quotes and the signed-in user."""

from __future__ import annotations

from typing import Any

from app import catalog
from app.auth import current_user
from app.db import Database

Response = tuple[int, dict[str, Any]]


def products(db: Database) -> Response:
    return 200, {"products": [catalog.product_json(row) for row in catalog.list_products(db)]}


def product(db: Database, product_id: int) -> Response:
    row = catalog.get_product(db, product_id)
    if row is None:
        return 404, {"error": "not found"}
    return 200, catalog.product_json(row, detail=True)


def cart_quote(db: Database, payload: Any) -> Response:
    try:
        items = catalog.parse_items(payload)
    except catalog.QuoteError as exc:
        return 400, {"error": str(exc)}
    return 200, catalog.quote(db, items)


def me(db: Database, token: str | None) -> Response:
    user = current_user(db, token)
    if user is None:
        return 200, {"signed_in": False}
    return 200, {"signed_in": True,
                 "user": {"id": user["id"], "name": user["name"], "email": user["email"]}}
