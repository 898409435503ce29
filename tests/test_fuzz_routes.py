"""A seeded, time-bounded fuzz of every HTTP route of the real service (issue 10, item 3).

The routes come from the running app's `url_map`, so a route added later is fuzzed without
touching this file. Each example is one request over loopback with a random method, path
parameters, query, headers (tokens valid and not, Content-Type, Idempotency-Key, ...) and body
(random bytes, random JSON, deep nesting, unsafe integers, NaN, duplicate keys, order-shaped
bodies that reach validation and the venue). It asserts that nothing answers 5xx except a
documented 503 (a broker or store that cannot answer, `/health` while degraded), and that every
error is in the error shape. It prints (run with `-s`) how many requests it sent and how many
answered 5xx.

Hypothesis drives the examples from a worker thread (`derandomize=True`: the same examples every
run); each request hops back into the test's Trio run, where the service lives.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from typing import Any
from urllib.parse import quote, urlencode

import attrs
import httpx
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervision.service import Running
from tests.fixtures_service import ADMIN, TOKENS, api
from tests.fixtures_web import assert_error_shape

#: `make test` runs 1000; set ORDERDESK_FUZZ_EXAMPLES higher for a longer hunt.
MAX_EXAMPLES = int(os.environ.get("ORDERDESK_FUZZ_EXAMPLES", "1000"))
#: 503 error codes the README documents ("Request bodies"); /health answers 503 when degraded.
DOCUMENTED_503 = frozenset({"unavailable", "broker_unavailable", "store_unavailable"})
BODY = frozenset({"POST", "PUT", "PATCH"})
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
QUERY_KEYS = ("limit", "since", "q", "exchange", "account", "access_token", "ticket", "x")
_PARAMETER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


@attrs.frozen
class Route:
    rule: str
    methods: frozenset[str]


@attrs.frozen
class Fuzzed:
    method: str
    path: str
    headers: dict[str, bytes]
    body: bytes | None


def routes_of(running: Running) -> list[Route]:
    return [Route(r.rule, frozenset(r.methods or ())) for r in running.app.url_map.iter_rules()]


# -- strategies ----------------------------------------------------------------------------

#: Bytes h11 accepts in a header value (visible ASCII, obs-text, inner spaces).
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
).map(lambda s: s.strip().encode("latin-1")).filter(bool)

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


def path_values(converter: str | None) -> st.SearchStrategy[str]:
    known = st.sampled_from(["primary"] * 6 + ["secondary", "nobody", "..", "1", "app.js"])
    safe = "/" if converter == "path" else ""
    text = st.text(min_size=1, max_size=30)
    return st.one_of(known, known, known, text).map(lambda v: quote(v, safe=safe) or "x")


@st.composite
def legs(draw: st.DrawFn, symbols: list[str]) -> dict[str, Any]:
    leg: dict[str, Any] = {
        "tradingsymbol": draw(st.sampled_from(symbols) | st.text(max_size=12)),
        "exchange": draw(st.sampled_from(["NFO", "NSE", "BSE", ""])),
        "transaction_type": draw(st.sampled_from(["BUY", "SELL", "HOLD"])),
        "quantity": draw(st.sampled_from([75, 150, 0, -75, 1.5, "75"]) | st.integers()),
        "order_type": draw(st.sampled_from(["MARKET", "LIMIT", "SL", "SL-M", "X"])),
        "product": draw(st.sampled_from(["NRML", "MIS", "CNC", "?"])),
    }
    if draw(st.booleans()):
        leg["price"] = draw(st.floats(allow_nan=False, allow_infinity=False) | st.integers())
    return leg


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def bodies(symbols: list[str]) -> st.SearchStrategy[bytes | None]:
    deep = st.integers(30, 3000).flatmap(lambda n: st.sampled_from([
        b"[" * n + b"]" * n, b'{"a":' * n + b"1" + b"}" * n, b"[" * n,
    ]))
    orders = st.fixed_dictionaries(
        {"orders": st.lists(legs(symbols), min_size=1, max_size=3)},
        optional={"rollback_on_failure": st.booleans(),
                  "execution": st.sampled_from(["parallel", "hedge_first", "x"]),
                  "timeout_s": st.floats(allow_nan=False) | st.integers()},
    )
    return st.one_of(
        st.none(),
        st.binary(max_size=200),
        json_values.map(json_bytes),
        orders.map(json_bytes),
        legs(symbols).map(json_bytes),
        st.text(min_size=1, max_size=40).map(lambda t: json_bytes({"access_token": t})),
        deep,
        st.integers(2**53, 10**40).map(lambda n: b'{"quantity": %d}' % n),
        st.sampled_from([b'{"price": NaN}', b'{"price": -Infinity}', b'{"price": 1e999}',
                         b'{"orders": [], "orders": [{}]}', b'{"tag": "\\ud800"}',
                         b'{"tag": "\\u0000"}', b"\xff\xfe{}", b"\xef\xbb\xbf{}", b"", b"  "]),
    )


@st.composite
def requests(draw: st.DrawFn, routes: list[Route], symbols: list[str]) -> Fuzzed:
    # Routes that take a body are drawn three times as often: that is where the bodies go.
    route = draw(st.sampled_from([r for r in routes for _ in range(3 if r.methods & BODY else 1)]))
    method = draw(st.sampled_from(sorted(route.methods) * 20 + list(METHODS)))
    path = _PARAMETER.sub(lambda m: draw(path_values(m.group(1))), route.rule)
    query = draw(st.dictionaries(st.sampled_from(QUERY_KEYS), st.text(max_size=12), max_size=3))
    if query:
        path += "?" + urlencode(query)
    elif draw(st.booleans()):
        path += "?" + draw(st.sampled_from(["limit=%ff", "since=%C2%B2", "q=%00", "&&=", "%"]))
    wanted = ADMIN if route.rule.startswith("/admin/") else TOKENS["primary"]
    token = draw(st.sampled_from([wanted] * 6 + [ADMIN, TOKENS["secondary"], None, "nope"]))
    headers: dict[str, bytes] = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}".encode()
    elif draw(st.booleans()):
        headers["Authorization"] = draw(header_values)
    # (header, how often it is sent, values): hypothesis favours the first of `sampled_from`.
    for name, often, choices in (
        ("Content-Type", [True, False], [b"application/json"] * 4 + [
            b"text/plain", b"multipart/form-data", b"application/x-www-form-urlencoded",
            b"application/json; charset=x"]),
        ("Idempotency-Key", [False, True], [b"k-1", b"k-2", b"a b", b"x" * 300]),
        ("X-Correlation-ID", [False, False, True], [b"fuzz", b"\xff" * 10]),
        ("Origin", [False] * 9 + [True], [b"http://evil.example", b"null"]),
        ("If-None-Match", [False] * 9 + [True], [b'"x"', b"*"]),
    ):
        if draw(st.sampled_from(often)):
            headers[name] = draw(st.sampled_from(choices) | header_values)
    return Fuzzed(method, path, headers, draw(bodies(symbols)))


# -- the test ------------------------------------------------------------------------------


def check(request: Fuzzed, response: httpx.Response) -> None:
    where = f"{request.method} {request.path[:100]} -> {response.status_code} {response.text[:200]}"
    is_health = request.path.split("?")[0] == "/health"
    if response.status_code >= 500:
        assert response.status_code == 503, where
        if not is_health:
            assert assert_error_shape(response)["error"] in DOCUMENTED_503, where
    elif response.status_code >= 400 and request.method != "HEAD":
        assert_error_shape(response)


async def fuzz_symbols(http: httpx.AsyncClient) -> list[str]:
    """A few real symbols, so some order bodies pass validation and reach the venue."""
    found = await http.get("/instruments", params={"q": "NIFTY", "limit": 6},
                           headers={"Authorization": f"Bearer {ADMIN}"})
    assert found.status_code == 200, found.text
    return [row["tradingsymbol"] for row in found.json()["instruments"]]


async def test_fuzz_every_route_never_answers_5xx(service: Running) -> None:
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    with trio.fail_after(120):
        async with api(service, token=None) as http:
            routes = routes_of(service)
            symbols = await fuzz_symbols(http)

            async def send(request: Fuzzed) -> httpx.Response:
                return await http.request(request.method, request.path,
                                          headers=request.headers, content=request.body)

            @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None,
                      deadline=None, suppress_health_check=list(HealthCheck))
            @given(request=requests(routes, symbols))
            def fuzz(request: Fuzzed) -> None:
                response = trio.from_thread.run(send, request)
                statuses[response.status_code] += 1
                check(request, response)

            await trio.to_thread.run_sync(fuzz)
    fives = sum(n for status, n in statuses.items() if status >= 500)
    print(f"\nfuzz: {sum(statuses.values())} requests over {len(routes)} routes in "
          f"{time.monotonic() - started:.1f}s; 5xx: {fives}; by status: {sorted(statuses.items())}")
    assert len(routes) >= 20  # the service's whole url_map, websocket route included
