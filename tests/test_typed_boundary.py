"""The typed boundary: the coordinator raises typed errors and returns typed values, and the
web front alone decides their HTTP status and body (web/replies.py)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
import trio

from actors import outcomes, requests
from actors.batch import BatchCoordinator
from actors.errors import (
    BatchNotFound,
    CoordinatorError,
    FieldError,
    InvalidRequest,
    MalformedRequest,
    UnknownAccount,
)
from actors.outcomes import (
    BatchProgress,
    BatchResult,
    CancelledOrder,
    Exposure,
    FlattenedPosition,
    FlattenOrder,
    HeldPosition,
    KillReport,
    LegProgress,
    LegResult,
    RollbackDetail,
    StoppedBatch,
    Symbol,
    as_json,
    stored_result,
)
from actors.requests import (
    AuditQuery,
    BatchRequest,
    InstrumentsQuery,
    KiteCallbackQuery,
    LegRequest,
    OrderStreamQuery,
    body_hash,
)
from store import open_store
from tests.fixtures_web import typed
from web.converter import make_converter
from web.errors import InvalidInput
from web.replies import STATUS, refusal

ACTORS = Path(__file__).parent.parent / "actors"


def _attrs_classes(module: ModuleType) -> list[type]:
    return [value for name, value in vars(module).items()
            if attrs.has(value) and value.__module__ == module.__name__]


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found.union(*(_subclasses(sub) for sub in found)) if found else found


def _http_replies(path: Path) -> list[int]:
    """Lines of `path` returning a tuple whose first item is an HTTP status (100..599)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        value = node.value if isinstance(node, ast.Return) else None
        if (isinstance(value, ast.Tuple) and value.elts
                and isinstance(value.elts[0], ast.Constant)
                and isinstance(value.elts[0].value, int) and 100 <= value.elts[0].value <= 599):
            lines.append(node.lineno)
    return lines


def test_actors_answer_no_http_status() -> None:
    found = {path.name: _http_replies(path) for path in sorted(ACTORS.rglob("*.py"))}
    assert {name: lines for name, lines in found.items() if lines} == {}
    # The (status, body) reply type: an HTTP status and a JSON body.
    assert not [path.name for path in ACTORS.rglob("*.py")
                if "tuple[int, dict[str, Any]]" in path.read_text(encoding="utf-8")]


@pytest.mark.parametrize("error", sorted(_subclasses(CoordinatorError), key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_every_refusal_has_its_status(error: type[CoordinatorError]) -> None:
    assert error in STATUS, f"web/replies.py maps no status for {error.__name__}"
    assert 400 <= STATUS[error][0] <= 599


def test_invalid_request_lists_its_fields() -> None:
    status, body = refusal(make_converter(), InvalidRequest(
        [FieldError("orders[0].quantity", "lot", "a multiple of 75")]))
    assert status == 422
    assert body == {"error": "invalid_request",
                    "message": "the request is invalid; nothing was placed",
                    "fields": [{"path": "orders[0].quantity", "rule": "lot",
                                "message": "a multiple of 75"}]}


async def test_the_coordinator_raises_typed_errors(sqlite_url: str) -> None:
    with trio.fail_after(10):
        async with open_store(sqlite_url) as store:
            coordinator = BatchCoordinator(store, {})
            refused = [
                coordinator.submit("nobody", *typed({"orders": []}, BatchRequest), None),
                coordinator.place_single("nobody", *typed({}, LegRequest)),
                coordinator.cancel_order("nobody", "1"),
                coordinator.kill("nobody"),
            ]
            for call in refused:
                with pytest.raises(UnknownAccount, match="no account 'nobody'"):
                    await call
            with pytest.raises(BatchNotFound, match="no batch 'abcdefghij'"):
                await coordinator.get("nobody", "abcdefghij")


# -- structuring: bodies and queries into the request models ---------------------------------

def _leg(**changes: Any) -> dict[str, Any]:
    return {"tradingsymbol": "NIFTY26DECFUT", "exchange": "NFO", "transaction_type": "BUY",
            "quantity": 75, "order_type": "MARKET", "product": "NRML", **changes}


def _shape_problems(body: Any, model: type) -> list[tuple[str, str]]:
    with pytest.raises(MalformedRequest) as info:
        make_converter().structure(body, model)
    return [(f.path, f.rule) for f in info.value.fields]


def test_a_valid_batch_structures_into_the_model() -> None:
    body = {"orders": [_leg(), _leg(transaction_type="SELL", order_type="LIMIT", price=100,
                                    validity="IOC")], "execution": "hedge_first", "timeout_s": 5}
    request = make_converter().structure(body, BatchRequest)
    assert request == BatchRequest(
        orders=[LegRequest(tradingsymbol="NIFTY26DECFUT", exchange="NFO", transaction_type="BUY",
                           quantity=75, order_type="MARKET", product="NRML"),
                LegRequest(tradingsymbol="NIFTY26DECFUT", exchange="NFO",
                           transaction_type="SELL", quantity=75, order_type="LIMIT",
                           product="NRML", price=100, validity="IOC")],
        rollback_on_failure=True, execution="hedge_first", timeout_s=5.0)
    assert make_converter().structure(_leg(quantity=75.0), LegRequest).quantity == 75


@pytest.mark.parametrize(("changes", "expected"), [
    ({"quantity": "75"}, [("quantity", "type")]),  # no coercion from strings
    ({"quantity": True}, [("quantity", "type")]),  # a bool is not a number
    ({"quantity": 7.5}, [("quantity", "type")]),
    ({"quantity": 0}, [("quantity", "positive")]),
    ({"quantity": None}, [("quantity", "required")]),
    ({"exchange": "XXX"}, [("exchange", "enum")]),
    ({"exchange": ["NFO"]}, [("exchange", "enum")]),
    ({"validity": None}, [("validity", "required")]),
    ({"variety": "amo"}, [("variety", "enum")]),
    ({"tradingsymbol": "  "}, [("tradingsymbol", "required")]),
    ({"price": "100"}, [("price", "type")]),
    ({"price": False}, [("price", "type")]),
    ({"market_protection": 101}, [("market_protection", "range")]),
    ({"tag": "mine", "zz": 1, "aa": 2}, [("tag", "forbidden"), ("aa", "unknown_field"),
                                         ("zz", "unknown_field")]),
    ({"product": "XYZ", "quantity": -1}, [("product", "enum"), ("quantity", "positive")]),
])
def test_each_shape_problem_names_its_path_and_rule(
    changes: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert _shape_problems(_leg(**changes), LegRequest) == expected
    assert _shape_problems({"orders": [_leg(), _leg(**changes)]}, BatchRequest) == [
        (f"orders[1].{path}", rule) for path, rule in expected]


@pytest.mark.parametrize(("body", "expected"), [
    ({}, [("orders", "required")]),
    ({"orders": {}}, [("orders", "type")]),
    ({"orders": [_leg()] * 11}, [("orders", "count")]),
    ({"orders": [5]}, [("orders[0]", "type")]),
    ({"orders": [_leg()], "rollback_on_failure": 1}, [("rollback_on_failure", "type")]),
    ({"orders": [_leg()], "execution": "serial"}, [("execution", "enum")]),
    ({"orders": [_leg()], "timeout_s": "5"}, [("timeout_s", "range")]),
    ({"orders": [_leg()], "timeout_s": 0}, [("timeout_s", "range")]),
    ({"orders": [_leg()], "extra": 1}, [("extra", "unknown_field")]),
])
def test_batch_shape_problems(body: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert _shape_problems(body, BatchRequest) == expected


def test_a_malformed_batch_carries_its_well_formed_orders() -> None:
    with pytest.raises(MalformedRequest) as info:
        make_converter().structure({"orders": [_leg(), _leg(exchange="X"), _leg(quantity=150)],
                                    "execution": "serial"}, BatchRequest)
    assert [n for n, _ in info.value.orders] == [0, 2]
    assert info.value.orders[1][1].quantity == 150


def test_the_idempotency_hash_is_the_hash_of_the_json_as_sent() -> None:
    # Pinned: batches stored before the typed boundary must still replay (and conflict).
    body = {"orders": [_leg()], "rollback_on_failure": True}
    assert body_hash(body) == (
        "eb455d29c5b1735c20b27334aef90811c174ca7ce9bd1428d6811d5189386cf9")


@pytest.mark.parametrize(("model", "args", "expected"), [
    (InstrumentsQuery, {"q": " nifty ", "exchange": "nfo"},
     InstrumentsQuery(q="NIFTY", exchange="NFO", limit=50)),
    (InstrumentsQuery, {"limit": "7", "account": "primary"},
     InstrumentsQuery(limit=7, account="primary")),
    (AuditQuery, {"account": ""}, AuditQuery()),
    (OrderStreamQuery, {"since": "12", "ticket": "t"}, OrderStreamQuery(since=12, ticket="t")),
    (KiteCallbackQuery, {"request_token": "abc_1"}, KiteCallbackQuery(request_token="abc_1")),
    (KiteCallbackQuery, {"status": "cancelled"},
     KiteCallbackQuery(request_token="", status="cancelled")),
])
def test_queries_structure_into_their_models(model: type, args: dict[str, str],
                                             expected: object) -> None:
    assert make_converter().structure(args, model) == expected


@pytest.mark.parametrize(("model", "args", "expected"), [
    (InstrumentsQuery, {"exchange": "MCX"}, ("exchange", "enum")),
    (InstrumentsQuery, {"limit": "0"}, ("limit", "range")),
    (AuditQuery, {"limit": "1001"}, ("limit", "range")),
    (OrderStreamQuery, {"since": "-1"}, ("since", "range")),
    (KiteCallbackQuery, {}, ("request_token", "required")),
    (KiteCallbackQuery, {"request_token": "a b"}, ("request_token", "format")),
])
def test_bad_query_parameters_are_named(model: type, args: dict[str, str],
                                        expected: tuple[str, str]) -> None:
    with pytest.raises(InvalidInput) as info:
        make_converter().structure(args, model)
    assert [(f.path, f.rule) for f in info.value.fields] == [expected]


@pytest.mark.parametrize("model", [*_attrs_classes(requests), *_attrs_classes(outcomes)],
                         ids=lambda c: c.__name__)
def test_every_field_says_what_it_means(model: type) -> None:
    assert [a.name for a in attrs.fields(model) if not a.metadata.get("doc")] == []


# -- unstructuring: every result type, as clients and the store see it ----------------------

_ROLLBACK = RollbackDetail(action="failed", order_id="r1", status="OPEN", filled=0, remaining=None,
                           unknown_tags=["odX0L0"], quantity_at_most=75, error="unknown")
_RESULT = BatchResult(
    status="rollback_failed", batch_id="b1", total_orders=1, succeeded=1, failed=0,
    order_ids=["o1"], duration_ms=12.5, execution="parallel",
    legs=[LegResult(index=0, order_id="o1", tag="odb10L0", status="COMPLETE",
                    filled_quantity=75, average_price=101.5, error=None, rollback=_ROLLBACK)],
    exposure=[Exposure(index=0, tradingsymbol="NIFTY26DECFUT", exchange="NFO", product="NRML",
                       transaction_type="BUY", quantity=None, open_order_ids=[],
                       unknown_tags=["odX0L0"], quantity_at_most=75)])
_PLAIN = attrs.evolve(_RESULT, status="success", exposure=None, legs=[
    attrs.evolve(_RESULT.legs[0], rollback=None)])
_PROGRESS = BatchProgress(
    status="running", batch_id="b1", total_orders=1, order_ids=[], duration_ms=3.0,
    execution="hedge_first", execution_reason="fits only hedged",
    legs=[LegProgress(index=0, order_id=None, tag="odb10L0", status="PENDING",
                      filled_quantity=None, average_price=None, error=None)])
_KILL = KillReport(
    account="primary", status="incomplete", remaining="unknown", remaining_reason="no token",
    cancelled=[CancelledOrder(order_id="o2", status="CANCELLED", filled_quantity=0, error=None)],
    flattened=[FlattenedPosition(tradingsymbol="NIFTY26DECFUT", exchange="NFO", product="NRML",
                                 quantity=-75, batches=["b1"], orders=[FlattenOrder(
                                     order_id="o3", tag="odk00K0", status="COMPLETE",
                                     filled_quantity=75, order_type="MARKET", modifications=0,
                                     error=None)])],
    open_orders=[], errors=["positions after: no token"], warnings=[], unfinished=[],
    skipped=[Symbol(exchange="NFO", tradingsymbol="X")],
    stopped_batches=[StoppedBatch(batch_id="b1", status="partial", flattened=[])])
_HELD = attrs.evolve(_KILL, status="done", remaining=[HeldPosition(
    tradingsymbol="X", exchange="NFO", product="NRML", quantity=1)], remaining_reason=None)


@pytest.mark.parametrize("value", [_RESULT, _PLAIN, _PROGRESS, _KILL, _HELD],
                         ids=["rollback_failed", "success", "progress", "kill", "kill-held"])
def test_every_result_unstructures_as_the_store_keeps_it(value: object) -> None:
    assert make_converter().unstructure(value) == as_json(value)


def test_optional_result_fields_are_left_out_not_null() -> None:
    plain = make_converter().unstructure(_PLAIN)
    assert "exposure" not in plain and "execution_reason" not in plain
    assert plain["legs"][0]["rollback"] is None  # null, as always
    rollback = make_converter().unstructure(_RESULT)["legs"][0]["rollback"]
    assert "open_order_ids" not in rollback and rollback["remaining"] is None
    assert "remaining_reason" not in make_converter().unstructure(_HELD)
    assert make_converter().unstructure(_PROGRESS)["execution_reason"] == "fits only hedged"


@pytest.mark.parametrize("value", [_RESULT, _PLAIN], ids=["rollback_failed", "success"])
def test_a_stored_result_reads_back_the_same(value: BatchResult) -> None:
    stored = json.loads(json.dumps(as_json(value)))
    assert stored_result(stored) == value
