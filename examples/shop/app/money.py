"""Prices are integer cents; shipping is free from $50."""

from __future__ import annotations

FREE_SHIPPING_FROM_CENTS = 5000
SHIPPING_CENTS = 495


def format_cents(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def shipping_for(subtotal_cents: int) -> int:
    if subtotal_cents == 0 or subtotal_cents >= FREE_SHIPPING_FROM_CENTS:
        return 0
    return SHIPPING_CENTS
