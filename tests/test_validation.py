"""Validation rules of batch and single-order bodies: every problem, by field path."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest

from actors.instruments import InstrumentInfo
from actors.requests import BatchRequest, LegRequest
from actors.validation import (
    IST,
    InvalidRequest,
    TradingCalendar,
    validate_batch,
    validate_order,
)
from tests.fixtures_orders import DROP, leg
from tests.fixtures_web import typed

_MASTER = {
    ("NFO", "NIFTY26DECFUT"): InstrumentInfo("NFO", "NIFTY26DECFUT", 75, 0.05, "NIFTY", 1800),
    ("NFO", "NIFTY26DEC24000CE"): InstrumentInfo(
        "NFO", "NIFTY26DEC24000CE", 75, 0.05, "NIFTY", 1800
    ),
    ("NSE", "SBIN"): InstrumentInfo("NSE", "SBIN", 1, 0.05, "STATE BANK OF INDIA"),
}

FUT = "NIFTY26DECFUT"


def lookup(exchange: str, symbol: str) -> InstrumentInfo | None:
    return _MASTER.get((exchange, symbol))


def batch(body: Any) -> Any:
    """The batch body as the web front hands it over: typed, or its shape problems."""
    return typed(body, BatchRequest)[0]


def single(body: Any) -> Any:
    return typed(body, LegRequest)[0]


def problems(body: Any) -> set[tuple[str, str]]:
    with pytest.raises(InvalidRequest) as info:
        validate_batch(batch(body), lookup)
    return {(f.path, f.rule) for f in info.value.fields}


def test_a_valid_seed_body_passes() -> None:
    spec = validate_batch(batch({"orders": [leg(FUT), leg(FUT, transaction_type="SELL")],
                                 "rollback_on_failure": True}), lookup)
    assert len(spec.legs) == 2
    assert spec.legs[1].transaction_type == "SELL"
    assert spec.execution == "parallel" and spec.timeout_s == 10.0 and spec.rollback_on_failure


def test_every_problem_is_reported_at_once() -> None:
    body = {"orders": [leg(FUT), leg(FUT, quantity=70), leg(FUT, exchange="XXX"),
                       leg(FUT, tag="mine")]}
    assert problems(body) == {
        ("orders[1].quantity", "lot_multiple"),
        ("orders[2].exchange", "enum"),
        ("orders[3].tag", "forbidden"),
    }


@attrs.frozen
class Case:
    order: dict[str, Any]
    expected: set[tuple[str, str]]


CASES = {
    "unknown instrument": Case(
        leg(FUT, tradingsymbol="NOPE"), {("tradingsymbol", "unknown_instrument")}
    ),
    "missing symbol": Case(leg(FUT, tradingsymbol=DROP), {("tradingsymbol", "required")}),
    "zero quantity": Case(leg(FUT, quantity=0), {("quantity", "positive")}),
    "negative quantity": Case(leg(FUT, quantity=-75), {("quantity", "positive")}),
    "fractional quantity": Case(leg(FUT, quantity=75.5), {("quantity", "type")}),
    "string quantity": Case(leg(FUT, quantity="75"), {("quantity", "type")}),
    "boolean quantity": Case(leg(FUT, quantity=True), {("quantity", "type")}),
    "missing quantity": Case(leg(FUT, quantity=DROP), {("quantity", "required")}),
    "not a lot multiple": Case(leg(FUT, quantity=100), {("quantity", "lot_multiple")}),
    "above freeze": Case(leg(FUT, quantity=1875), {("quantity", "freeze_limit")}),
    "bad side": Case(leg(FUT, transaction_type="HOLD"), {("transaction_type", "enum")}),
    "bad order type": Case(leg(FUT, order_type="STOP"), {("order_type", "enum")}),
    "bad product": Case(leg(FUT, product="XYZ"), {("product", "enum")}),
    "cnc on nfo": Case(leg(FUT, product="CNC"), {("product", "product_segment")}),
    "bad validity": Case(leg(FUT, validity="GTC"), {("validity", "enum")}),
    "bad variety": Case(leg(FUT, variety="amo"), {("variety", "enum")}),
    "unknown field": Case(leg(FUT, quantiy=75), {("quantiy", "unknown_field")}),
    "client tag": Case(leg(FUT, tag="x"), {("tag", "forbidden")}),
    "market with price": Case(leg(FUT, price=100.0), {("price", "not_allowed")}),
    "market with trigger": Case(leg(FUT, trigger_price=100.0), {("trigger_price", "not_allowed")}),
    "limit without price": Case(leg(FUT, order_type="LIMIT"), {("price", "required")}),
    "limit off tick": Case(leg(FUT, order_type="LIMIT", price=100.03), {("price", "tick")}),
    "limit negative": Case(leg(FUT, order_type="LIMIT", price=-1), {("price", "type"),
                                                              ("price", "required")}),
    "limit with trigger": Case(leg(FUT, order_type="LIMIT", price=100.0, trigger_price=99.0),
                               {("trigger_price", "not_allowed")}),
    "sl without trigger": Case(leg(FUT, order_type="SL", price=100.0),
                               {("trigger_price", "required")}),
    "sl buy trigger above": Case(leg(FUT, order_type="SL", price=100.0, trigger_price=101.0),
                                 {("trigger_price", "trigger_side")}),
    "sl sell trigger below": Case(leg(FUT, order_type="SL", transaction_type="SELL", price=100.0,
                                      trigger_price=99.0), {("trigger_price", "trigger_side")}),
    "slm without trigger": Case(leg(FUT, order_type="SL-M"), {("trigger_price", "required")}),
    "slm with price": Case(leg(FUT, order_type="SL-M", trigger_price=100.0, price=100.0),
                           {("price", "not_allowed")}),
    "protection range": Case(leg(FUT, market_protection=150), {("market_protection", "range")}),
    "protection on limit": Case(leg(FUT, order_type="LIMIT", price=100.0, market_protection=5),
                                {("market_protection", "not_allowed")}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_leg_rule(case: Case) -> None:
    found = problems({"orders": [leg(FUT), case.order]})
    assert found == {(f"orders[1].{path}", rule) for path, rule in case.expected}


@pytest.mark.parametrize("order", [
    leg(FUT, order_type="LIMIT", price=24000.05),
    leg(FUT, order_type="SL", price=100.0, trigger_price=99.5),
    leg(FUT, order_type="SL", transaction_type="SELL", price=100.0, trigger_price=100.5),
    leg(FUT, order_type="SL-M", trigger_price=100.0, market_protection=-1),
    leg(FUT, market_protection=3, validity="IOC"),
    leg(FUT, exchange="NSE", tradingsymbol="SBIN", quantity=7, product="CNC"),
    leg(FUT, quantity=1800),
])
def test_valid_leg_shapes(order: dict[str, Any]) -> None:
    assert validate_batch(batch({"orders": [order]}), lookup).legs[0].quantity == order["quantity"]


@pytest.mark.parametrize(("body", "expected"), [
    ([], {("", "type")}),
    ({}, {("orders", "required")}),
    ({"orders": {}}, {("orders", "type")}),
    ({"orders": []}, {("orders", "count")}),
    ({"orders": [leg(FUT)] * 11}, {("orders", "count")}),
    ({"orders": [leg(FUT), 5]}, {("orders[1]", "type")}),
    ({"orders": [leg(FUT)], "rollback_on_failure": "yes"}, {("rollback_on_failure", "type")}),
    ({"orders": [leg(FUT)], "execution": "serial"}, {("execution", "enum")}),
    ({"orders": [leg(FUT)], "timeout_s": 0}, {("timeout_s", "range")}),
    ({"orders": [leg(FUT)], "timeout_s": 61}, {("timeout_s", "range")}),
    ({"orders": [leg(FUT)], "timeout_s": "5"}, {("timeout_s", "range")}),
    ({"orders": [leg(FUT)], "extra": 1}, {("extra", "unknown_field")}),
])
def test_batch_rules(body: Any, expected: set[tuple[str, str]]) -> None:
    assert problems(body) == expected


def test_batch_options_pass_through() -> None:
    spec = validate_batch(batch({"orders": [leg(FUT)] * 10, "execution": "hedge_first",
                                 "timeout_s": 60, "rollback_on_failure": False}), lookup)
    assert (len(spec.legs), spec.execution, spec.timeout_s) == (10, "hedge_first", 60.0)
    assert spec.rollback_on_failure is False


@pytest.mark.parametrize(("when", "is_open"), [
    (dt.datetime(2026, 3, 2, 9, 14, tzinfo=IST), False),  # a Monday, before the open
    (dt.datetime(2026, 3, 2, 9, 15, tzinfo=IST), True),
    (dt.datetime(2026, 3, 2, 15, 30, tzinfo=IST), True),
    (dt.datetime(2026, 3, 2, 15, 31, tzinfo=IST), False),
    (dt.datetime(2026, 3, 7, 11, 0, tzinfo=IST), False),  # a Saturday
    (dt.datetime(2026, 3, 2, 5, 0, tzinfo=dt.UTC), True),  # 10:30 IST
])
def test_session_hours(when: dt.datetime, is_open: bool) -> None:
    body = {"orders": [leg(FUT)]}
    if is_open:
        validate_batch(batch(body), lookup, session=TradingCalendar(), now=when)
    else:
        with pytest.raises(InvalidRequest) as info:
            validate_batch(batch(body), lookup, session=TradingCalendar(), now=when)
        assert [(f.path, f.rule) for f in info.value.fields] == [
            ("orders[0].exchange", "session")]


def test_single_order_paths_have_no_prefix() -> None:
    assert validate_order(single(leg(FUT)), lookup).quantity == 75
    with pytest.raises(InvalidRequest) as info:
        validate_order(single(leg(FUT, quantity=10, order_type="LIMIT")), lookup)
    assert {(f.path, f.rule) for f in info.value.fields} == {
        ("quantity", "lot_multiple"), ("price", "required"),
    }
