"""Request bodies and query parameters at the web boundary (issue 10, item 3): every body that
is not UTF-8 JSON is a 400 in the error shape, values JSON should not carry in an order are a
422 naming their path, and no input is ever a 500. Against the whole service, over loopback."""

from __future__ import annotations

import attrs
import trio

from supervision.service import Running
from tests.fixtures_service import ADMIN, TOKENS, api
from tests.fixtures_web import assert_error_shape

#: Every route that takes a body: (method, path, token).
BODY_ROUTES = (
    ("POST", "/accounts/primary/batch-orders", TOKENS["primary"]),
    ("POST", "/accounts/primary/orders", TOKENS["primary"]),
    ("PUT", "/admin/accounts/primary/credentials", ADMIN),
)
JSON = "application/json"


@attrs.frozen
class BodyCase:
    name: str
    content: bytes
    status: int
    code: str | None  # None: the route's own validation answers (its code)
    fields: tuple[tuple[str, str], ...] = ()  # (path, rule) expected, in order; () skips
    message: str = ""  # expected in the message
    content_type: str | None = JSON


BODY_CASES = [
    BodyCase("not UTF-8", b'{"orders": "\xff\xfe"}', 400, "invalid_json",
             message="not UTF-8: byte 0xff at offset 12"),
    BodyCase("latin-1", '{"tag": "café"}'.encode("latin-1"), 400, "invalid_json",
             message="not UTF-8"),
    BodyCase("truncated", b'{"orders": [', 400, "invalid_json", message="line 1, column 13"),
    BodyCase("syntax on line 2", b'{"orders": []\n,,}', 400, "invalid_json",
             message="line 2, column 2"),
    BodyCase("empty", b"", 400, "invalid_json", message="empty"),
    BodyCase("blank", b" \n", 400, "invalid_json", message="empty"),
    BodyCase("array", b"[]", 400, "invalid_json", message="JSON object, not an array"),
    BodyCase("string", b'"orders"', 400, "invalid_json", message="not a string"),
    BodyCase("2000 nested arrays", b"[" * 2000 + b"]" * 2000, 400, "invalid_json",
             message="deeper than 64"),
    BodyCase("2000 nested objects", b'{"a":' * 2000 + b"1" + b"}" * 2000, 400, "invalid_json",
             message="deeper than 64"),
    BodyCase("65 levels", b'{"orders":' + b"[" * 64 + b"]" * 64 + b"}", 400, "invalid_json",
             message="deeper than 64"),
    BodyCase("64 levels pass the reader", b'{"orders":' + b"[" * 63 + b"]" * 63 + b"}",
             422, None),
    BodyCase("brackets in strings are not nesting", b'{"tag": "' + b"[{" * 100 + b'"}',
             422, None),
    BodyCase("NaN", b'{"orders": [{"quantity": NaN}]}', 422, "invalid",
             (("orders[0].quantity", "finite_number"),), "refused"),
    BodyCase("Infinity", b'{"price": Infinity, "trigger_price": -Infinity}', 422, "invalid",
             (("price", "finite_number"), ("trigger_price", "finite_number"))),
    BodyCase("float overflowing to infinity", b'{"price": 1e400}', 422, "invalid",
             (("price", "finite_number"),)),
    BodyCase("duplicate key", b'{"quantity": 75, "quantity": 7500}', 422, "invalid",
             (("quantity", "unique_keys"),)),
    BodyCase("nested duplicate key", b'{"orders": [{"tag": "a", "tag": "b"}]}', 422, "invalid",
             (("orders[0].tag", "unique_keys"),)),
    BodyCase("integer above 2^53", b'{"quantity": 9007199254740993}', 422, "invalid",
             (("quantity", "safe_integer"),)),
    BodyCase("integer below -2^53", b'{"orders": [{"price": -9007199254740992}]}', 422,
             "invalid", (("orders[0].price", "safe_integer"),)),
    BodyCase("5000-digit integer", b'{"quantity": ' + b"9" * 5000 + b"}", 422, "invalid",
             (("quantity", "safe_integer"),)),
    BodyCase("NUL in a string", b'{"tag": "a\\u0000b"}', 422, "invalid",
             (("tag", "valid_text"),)),
    BodyCase("unpaired surrogate", b'{"orders": [{"tag": "\\ud800"}]}', 422, "invalid",
             (("orders[0].tag", "valid_text"),)),
    BodyCase("unpaired surrogate in a key", b'{"\\udfff": 1}', 422, "invalid",
             (("\udfff", "valid_text"),)),
    BodyCase("form content type", b'{"orders": []}', 415, "unsupported_media_type",
             message="application/json",
             content_type="application/x-www-form-urlencoded"),
    BodyCase("multipart content type", b"--x--", 415, "unsupported_media_type",
             content_type="multipart/form-data; boundary=x"),
    BodyCase("no content type is read as JSON", b"{}", 422, None, content_type=None),
    BodyCase("charset parameter", b"{}", 422, None,
             content_type="application/json; charset=utf-8"),
    BodyCase("+json media type", b"{}", 422, None,
             content_type="application/vnd.orderdesk+json"),
]


async def test_bad_bodies_are_4xx_in_the_error_shape_on_every_body_route(
    service: Running,
) -> None:
    with trio.fail_after(60):
        async with api(service, token=None) as http:
            for method, path, token in BODY_ROUTES:
                for case in BODY_CASES:
                    headers = {"Authorization": f"Bearer {token}"}
                    if case.content_type is not None:
                        headers["Content-Type"] = case.content_type
                    response = await http.request(method, path, content=case.content,
                                                  headers=headers)
                    where = f"{case.name}: {method} {path}: {response.text[:300]}"
                    assert response.status_code == case.status, where
                    body = assert_error_shape(response)
                    assert case.code in (None, body["error"]), where
                    assert case.message in body["message"], where
                    if case.fields:
                        got = tuple((f["path"], f["rule"]) for f in body["fields"])
                        assert got == case.fields, where


async def test_a_valid_body_still_places_after_refused_ones(service: Running) -> None:
    """The reader refuses what it must and nothing more: Python floats and 2^53 - 1 are fine."""
    with trio.fail_after(30):
        async with api(service, token=ADMIN) as http:
            body = b'{"access_token": "paper-primary", "unused": [1.5, -9007199254740991]}'
            response = await http.put("/admin/accounts/primary/credentials", content=body,
                                      headers={"Content-Type": JSON})
            assert response.status_code == 200, response.text
            assert response.json()["reloaded"] is True


@attrs.frozen
class QueryCase:
    path: str
    token: str


QUERY_CASES = [
    QueryCase(f"/instruments?limit={bad}", ADMIN)
    for bad in ("\u00b2", "\u0663", "-1", "0", "501", "1e3", "9" * 5000, "+5", " 5")
] + [
    QueryCase(f"/admin/audit?limit={bad}", ADMIN)
    for bad in ("\u00b2", "\u0663", "-1", "0", "1001", "many", "9" * 5000, "0x10")
]


async def test_bad_integer_query_parameters_are_422_naming_them(service: Running) -> None:
    with trio.fail_after(30):
        async with api(service, token=None) as http:
            for case in QUERY_CASES:
                response = await http.get(
                    case.path, headers={"Authorization": f"Bearer {case.token}"}
                )
                where = f"{case.path[:60]}: {response.text[:300]}"
                assert response.status_code == 422, where
                body = assert_error_shape(response)
                assert [(f["path"], f["rule"]) for f in body["fields"]] == [("limit", "range")]
            ok = await http.get("/instruments?q=nifty&limit=2",
                                headers={"Authorization": f"Bearer {ADMIN}"})
            assert ok.status_code == 200 and len(ok.json()["instruments"]) == 2


async def test_an_order_id_that_is_no_broker_id_is_422_not_a_broker_call(
    service: Running,
) -> None:
    """The id goes into the broker's URL: `..` or `1?x=1` would reach other broker routes."""
    with trio.fail_after(30):
        async with api(service) as http:
            for bad in ("%2E%2E", "1%3Fx=1", "1%23frag", "%C3%A9", "x" * 65):
                response = await http.delete(f"/accounts/primary/orders/{bad}")
                assert response.status_code == 422, f"{bad}: {response.text}"
                body = assert_error_shape(response)
                assert [(f["path"], f["rule"]) for f in body["fields"]] == [("order_id", "format")]
            unknown = await http.delete("/accounts/primary/orders/999999999")
            assert unknown.status_code < 500, unknown.text
