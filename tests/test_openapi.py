"""web/openapi.py: attrs classes to JSON Schema 2020-12, by the models' conventions; and the
websocket protocol's close codes are the ones web/ws.py uses."""

from __future__ import annotations

from typing import Any, Literal

import attrs
import jsonschema
import pytest

from web import ws
from web.openapi import Components, query_parameters, schema_of
from web.ws_protocol import CLOSE_CODES


@attrs.frozen
class Inner:
    """An inner thing."""

    name: str = attrs.field(metadata={"doc": "its name", "min_length": 1, "max_length": 8,
                                      "pattern": "^[a-z]+$"})


@attrs.frozen
class Outer:
    """An outer thing,
    over two lines."""

    side: Literal["BUY", "SELL"] = attrs.field(metadata={"doc": "buy or sell"})
    quantity: int = attrs.field(metadata={"minimum": 1, "maximum": 10})
    inner: Inner
    inners: list[Inner] = attrs.field(factory=list, metadata={"min_items": 1, "max_items": 3})
    price: float | None = attrs.field(default=None, metadata={"exclusive_minimum": 0})
    kind: Literal["a", "b"] | None = None
    pair: tuple[int, str] = (1, "x")
    many: tuple[int, ...] = ()
    extra: dict[str, Any] = attrs.field(factory=dict)
    note: Inner | None = attrs.field(default=None, metadata={"omit_if_none": True})


def test_conventions_become_keywords() -> None:
    components: Components = {}
    assert schema_of(Outer, components) == {"$ref": "#/components/schemas/Outer"}
    outer, inner = components["Outer"], components["Inner"]
    assert outer["description"] == "An outer thing, over two lines."
    assert outer["required"] == ["side", "quantity", "inner"]
    props = outer["properties"]
    assert props["side"] == {"type": "string", "enum": ["BUY", "SELL"],
                             "description": "buy or sell"}
    assert props["quantity"] == {"type": "integer", "minimum": 1, "maximum": 10}
    assert props["inner"] == {"$ref": "#/components/schemas/Inner"}
    assert props["inners"] == {"type": "array", "items": {"$ref": "#/components/schemas/Inner"},
                               "minItems": 1, "maxItems": 3}
    assert props["price"] == {"type": ["number", "null"], "exclusiveMinimum": 0}
    assert props["kind"] == {"type": ["string", "null"], "enum": ["a", "b", None]}
    assert props["pair"]["prefixItems"] == [{"type": "integer"}, {"type": "string"}]
    assert props["many"] == {"type": "array", "items": {"type": "integer"}}
    assert props["extra"] == {"type": "object", "additionalProperties": {}}
    assert props["note"] == {"$ref": "#/components/schemas/Inner"}  # absent, never null
    assert inner["properties"]["name"] == {"type": "string", "description": "its name",
                                           "minLength": 1, "maxLength": 8, "pattern": "^[a-z]+$"}


@pytest.mark.parametrize(("value", "valid"), [
    ({"side": "BUY", "quantity": 2, "inner": {"name": "ab"}}, True),
    ({"side": "BUY", "quantity": 2, "inner": {"name": "ab"}, "price": None, "kind": None}, True),
    ({"side": "HOLD", "quantity": 2, "inner": {"name": "ab"}}, False),
    ({"side": "BUY", "quantity": 0, "inner": {"name": "ab"}}, False),
    ({"side": "BUY", "quantity": 2, "inner": {"name": "AB"}}, False),
    ({"side": "BUY", "quantity": 2}, False),
    ({"side": "BUY", "quantity": 2, "inner": {"name": "ab"}, "price": 0}, False),
])
def test_the_schema_validates_as_the_model_means(value: dict[str, Any], valid: bool) -> None:
    components: Components = {}
    root = {"components": {"schemas": components}, **schema_of(Outer, components)}
    errors = list(jsonschema.Draft202012Validator(root).iter_errors(value))
    assert (not errors) == valid, errors


def test_query_parameters_have_no_null() -> None:
    params = {p["name"]: p for p in query_parameters(Outer)}
    assert params["side"]["required"] and not params["price"]["required"]
    assert params["price"]["schema"] == {"type": "number", "exclusiveMinimum": 0}
    assert params["kind"]["schema"] == {"type": "string", "enum": ["a", "b"]}


def test_every_close_code_is_documented() -> None:
    used = {value for name, value in vars(ws).items() if name.startswith("CLOSE_")}
    assert used | {1009} == set(CLOSE_CODES)
