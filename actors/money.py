"""Rupee amounts as a trader reads them: ₹ with Indian digit grouping (₹2,55,63,168.00).

Every API message that carries an amount formats it here, as the page's `money.js` does, so the
desk and the API say the same number the same way."""

from __future__ import annotations

__all__ = ["rupees"]


def rupees(amount: float) -> str:
    """`amount` as ₹ with two decimals, the last three digits grouped, then pairs (lakh, crore)."""
    sign = "-" if amount < 0 else ""
    whole, fraction = f"{abs(amount):.2f}".split(".")
    head, tail = whole[:-3], whole[-3:]
    pairs = []
    while head:
        pairs.insert(0, head[-2:])
        head = head[:-2]
    grouped = ",".join([*pairs, tail])
    return f"{sign}₹{grouped}.{fraction}"
