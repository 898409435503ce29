"""An order's fields are read by `field_readers` (not cattrs' generic structuring: a listing is
the whole day's orders): the same values accepted, the same refused, the payload kept as it
came."""

from __future__ import annotations

import math

import pytest

from brokers._wire import field_readers, make_wire_converter
from brokers.base import Order
from brokers.kite import parse_order

VALUES = ("OPEN", "", "12", "1.5", "nan", "inf", 7, 7.0, 7.5, True, math.nan, ["OPEN"],
          {"a": 1}, None)


@pytest.mark.parametrize("field", ["status", "tag", "quantity", "price"])
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_field_reads_as_the_converter_would(field: str, value: object) -> None:
    kind = {"status": str, "tag": str, "quantity": int, "price": float}[field]
    read = field_readers(Order, skip=("order_id", "raw"))[field]
    try:
        expected: object = make_wire_converter().structure(value, kind)
    except Exception:
        expected = "refused"
    try:
        got: object = read(value)
    except Exception:
        got = "refused"
    assert got == expected or (got != got and expected != expected)  # nan == nan


def test_the_payload_is_kept_as_it_came() -> None:
    payload = {"order_id": "1", "status": "OPEN", "quantity": "75", "tag": None, "x": [1]}
    order = parse_order(payload)
    assert order.raw is payload and order.quantity == 75 and order.tag is None
