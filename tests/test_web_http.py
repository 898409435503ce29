"""The HTTP side of the web front: status routes, auth, the error contract, middleware, metrics.

Most tests run on the real stack (venue, SQLite store, actors); failure cases (a store that is
down, an actor whose status raises) run the web front over stand-ins.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from quart import Blueprint, request

from actors.account import Subscription, UpstreamState
from tests.fixtures_web import (
    ADMIN_TOKEN,
    ALLOWED_ORIGIN,
    METRICS_TOKEN,
    TOKENS,
    Reader,
    WebStack,
    bearer,
    frames_to_messages,
    open_bare_app,
    open_web_stack,
    place_market,
)
from web import FieldError, InvalidInput, WebConfig, require_admin
from web.middleware import new_correlation_id, redact_query

# -- stand-ins and a blueprint of failing routes -------------------------------------------

test_routes = Blueprint("test_routes", __name__)
log = logging.getLogger("tests.web")


@test_routes.get("/_test/boom")
async def boom() -> str:
    log.info("about to fail")
    raise RuntimeError("secret internals")


@test_routes.post("/_test/invalid")
async def invalid() -> str:
    raise InvalidInput(
        [FieldError("orders[0].quantity", "lot_multiple", "quantity must be a multiple of 75")]
    )


@test_routes.get("/_test/admin")
async def admin_only() -> dict[str, Any]:
    return {"admin": require_admin().admin}


@test_routes.post("/_test/echo")
async def echo() -> dict[str, Any]:
    return {"got": await request.get_json(force=True)}


class StubStore:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    async def health(self) -> dict[str, Any]:
        if self.fail:
            raise ConnectionError("database is down")
        return {"ok": True, "engine": "stub"}


class StubActor:
    """Just enough of AccountActor for the web front; `queued` waits in each new subscription."""

    def __init__(self, account: str, *, queued: int = 0, broken: bool = False) -> None:
        self.account = account
        self.seq = queued
        self.upstream = UpstreamState(state="connected")
        self.queued = queued
        self.broken = broken
        self.subs: list[Subscription] = []

    def _order(self, seq: int) -> str:
        return json.dumps({"type": "order", "account": self.account, "seq": seq, "order": {}})

    def subscribe(self, since: int | None = None) -> Subscription:
        snapshot = json.dumps({"type": "snapshot", "account": self.account, "seq": 0,
                               "upstream": "connected", "orders": []}, separators=(",", ":"))
        status = json.dumps({"type": "status", "account": self.account, "upstream": "connected"})
        sub = Subscription(self.account, [snapshot, status], 1000)
        for seq in range(1, self.queued + 1):
            sub.offer(self._order(seq))
        self.subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close("unsubscribed")
        if sub in self.subs:
            self.subs.remove(sub)

    def close_subscribers(self, reason: str) -> None:
        for sub in self.subs:
            sub.close(reason)

    def orders(self) -> list[dict[str, Any]]:
        return []

    def status(self) -> dict[str, Any]:
        if self.broken:
            raise RuntimeError("status exploded")
        return {"account": self.account, "upstream": "connected", "subscribers": len(self.subs),
                "seq": self.seq, "orders": 0, "reconnects": 0, "last_error": None,
                "last_event_age_s": None, "max_queue_depth": 0}


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code
    assert body["message"]
    assert body["correlation_id"] == response.headers["X-Correlation-ID"]
    assert "Traceback" not in response.text and "<html" not in response.text.lower()
    return body


# -- status routes -----------------------------------------------------------------------


async def test_health_and_status_routes(web_stack: WebStack) -> None:
    with trio.fail_after(10):
        async with web_stack.http(ADMIN_TOKEN) as http:
            health = await http.get("/health")
            assert health.status_code == 200
            body = health.json()
            assert body["status"] == "ok" and body["store"]["ok"] is True
            assert body["reasons"] == []
            assert body["actors"] == {"total": 2, "connected": 2, "degraded": 0, "failed": 0}

            accounts = (await http.get("/accounts/health/status")).json()["accounts"]
            assert {a["account"]: a["healthy"] for a in accounts} == {
                "primary": True, "secondary": True,
            }

            status = (await http.get("/ws/status")).json()
            primary = next(a for a in status["accounts"] if a["account"] == "primary")
            for key in ("upstream", "subscribers", "seq", "last_event_age_s", "restarts",
                        "degraded", "reasons"):
                assert key in primary
            assert primary["upstream"] == "connected" and primary["subscribers"] == 0


async def test_orders_route_returns_the_actor_book(web_stack: WebStack) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            reader = Reader(await web_stack.connect(nursery))
            order_id = await place_market(web_stack.venue)
            await reader.until(lambda m: m.get("order", {}).get("status") == "COMPLETE")
            nursery.cancel_scope.cancel()
        async with web_stack.http(TOKENS["primary"]) as http:
            body = (await http.get("/accounts/primary/orders")).json()
        assert body["account"] == "primary" and body["seq"] == web_stack.actors["primary"].seq
        assert [o["order_id"] for o in body["orders"]] == [order_id]
        assert body["orders"][0]["status"] == "COMPLETE"
        async with web_stack.http(ADMIN_TOKEN) as admin:
            assert (await admin.get("/accounts/secondary/orders")).json()["orders"] == []


async def test_health_stays_200_and_says_degraded_with_reasons() -> None:
    with trio.fail_after(10):
        actors = {"primary": StubActor("primary")}
        async with open_bare_app(actors, StubStore(fail=True)) as stack:
            async with stack.http() as anonymous:
                response = await anonymous.get("/health")
                assert response.status_code == 200
                assert response.json()["status"] == "degraded"
                assert response.json()["reasons"] == ["store: unavailable"]
                assert "database is down" not in response.text  # hosts are the admin's business
            async with stack.http(ADMIN_TOKEN) as admin:
                response = await admin.get("/health")
                assert response.status_code == 200
                assert "database is down" in response.json()["store"]["error"]
        async with open_bare_app(actors, StubStore()) as stack, stack.http(ADMIN_TOKEN) as http:
            assert (await http.get("/health")).json()["status"] == "ok"
            entry = stack.health.register("account:primary", "actor")
            entry.record_error(RuntimeError("boom"))
            entry.set_state("failed")
            response = await http.get("/health")
            assert response.status_code == 200
            body = response.json()
            assert body["actors"]["failed"] == 1
            assert body["reasons"] == ["account:primary: failed: RuntimeError: boom"]
            assert body["accounts"]["primary"]["reasons"][0]["code"] == "failed"


@attrs.frozen
class ReadyCase:
    name: str
    store: str | None  # the store entry's state; None: not registered yet
    actors: tuple[str, ...]  # each account entry's state ("-": not registered)
    ever_ready: bool = True
    draining: bool = False
    ready: bool = True


READY_CASES = [
    ReadyCase("nothing yet", None, ("-", "-"), ready=False),
    ReadyCase("store open, one actor still starting", "running", ("running", "starting"),
              ever_ready=False, ready=False),
    ReadyCase("everything started", "running", ("running", "running")),
    ReadyCase("an actor failed: still ready", "running", ("failed", "running")),
    ReadyCase("an actor in backoff before it was ever ready", "running", ("backoff", "running"),
              ever_ready=False),
    ReadyCase("an actor restarting", "running", ("starting", "running")),
    ReadyCase("the store is down", "failed", ("running", "running"), ready=False),
    ReadyCase("draining", "running", ("running", "running"), draining=True, ready=False),
]


@pytest.mark.parametrize("case", READY_CASES, ids=lambda c: c.name)
async def test_ready(case: ReadyCase) -> None:
    actors = {"primary": StubActor("primary"), "secondary": StubActor("secondary")}
    with trio.fail_after(10):
        async with open_bare_app(actors, StubStore()) as stack, stack.http() as http:
            if case.store is not None:
                stack.health.register("store").set_state(case.store)
            for account, state in zip(actors, case.actors, strict=True):
                if state == "-":
                    continue
                entry = stack.health.register(f"account:{account}", "actor")
                if case.ever_ready:
                    entry.set_state("running")
                entry.set_state(state)
                entry.upstream = "auth_expired"  # an account's health never counts
            if case.draining:
                stack.health.begin_draining()
            response = await http.get("/ready")
            assert response.status_code == (200 if case.ready else 503), response.text
            assert response.json()["ready"] is case.ready
            assert "primary" not in response.text and "secondary" not in response.text
            if not case.ready:
                assert response.json()["error"] == "not_ready" and response.json()["reasons"]


async def test_ws_status_never_500s() -> None:
    actors = {"primary": StubActor("primary", broken=True), "secondary": StubActor("secondary")}
    with trio.fail_after(10):
        async with open_bare_app(actors, StubStore()) as stack, stack.http(ADMIN_TOKEN) as http:
            response = await http.get("/ws/status")
            assert response.status_code == 200
            by_account = {a["account"]: a for a in response.json()["accounts"]}
            assert "status exploded" in by_account["primary"]["error"]
            assert by_account["secondary"]["upstream"] == "connected"
            assert (await http.get("/accounts/health/status")).status_code == 200
            metrics = await http.get("/metrics", headers=bearer(METRICS_TOKEN))
            assert metrics.status_code == 200


async def test_queued_messages_are_coalesced_into_one_array_frame() -> None:
    actors = {"primary": StubActor("primary", queued=10)}
    with trio.fail_after(10):
        async with open_bare_app(actors, StubStore()) as stack, trio.open_nursery() as nursery:
            ws = await stack.connect(nursery)
            [snapshot] = frames_to_messages(await ws.get_message())  # a frame of its own
            [status] = frames_to_messages(await ws.get_message())
            assert (snapshot["type"], status["type"]) == ("snapshot", "status")
            frame = await ws.get_message()
            assert frame.startswith("[")
            assert [m["seq"] for m in frames_to_messages(frame)] == list(range(1, 11))
            nursery.cancel_scope.cancel()


# -- auth and the error contract -----------------------------------------------------------


@attrs.frozen
class ErrorCase:
    name: str
    method: str
    path: str
    status: int
    code: str
    token: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    content: bytes | None = None


ERROR_CASES = [
    ErrorCase("unknown route", "GET", "/nope", 404, "not_found"),
    ErrorCase("unknown account", "GET", "/accounts/nobody/orders", 404, "not_found",
              token=ADMIN_TOKEN),
    ErrorCase("method not allowed", "POST", "/health", 405, "method_not_allowed"),
    ErrorCase("no token", "GET", "/accounts/primary/orders", 401, "unauthorized"),
    ErrorCase("wrong token", "GET", "/accounts/primary/orders", 401, "unauthorized",
              token="wrong"),
    ErrorCase("other account", "GET", "/accounts/secondary/orders", 403, "forbidden",
              token=TOKENS["primary"]),
    ErrorCase("ticket for other account", "POST", "/accounts/secondary/ws-ticket", 403,
              "forbidden", token=TOKENS["primary"]),
    ErrorCase("admin route, account token", "GET", "/_test/admin", 403, "forbidden",
              token=TOKENS["primary"]),
    ErrorCase("admin route, no token", "GET", "/_test/admin", 401, "unauthorized"),
    ErrorCase("bad origin", "GET", "/health", 403, "forbidden",
              headers=(("Origin", "http://evil.example"),)),
    ErrorCase("internal", "GET", "/_test/boom", 500, "internal"),
    ErrorCase("bad json", "POST", "/_test/echo", 400, "invalid_json", content=b"{nope"),
    ErrorCase("deep json", "POST", "/_test/echo", 400, "invalid_json",
              content=b"[" * 5000 + b"]" * 5000),
    ErrorCase("too large", "POST", "/_test/echo", 413, "payload_too_large",
              content=b"[" + b"1," * 40_000 + b"1]"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.name)
async def test_error_contract(tmp_path: Path, case: ErrorCase) -> None:
    config = WebConfig(max_body_size=64 * 1024)
    actors = {"primary": StubActor("primary"), "secondary": StubActor("secondary")}
    with trio.fail_after(10):
        async with (
            open_bare_app(actors, StubStore(), web_config=config, blueprints=(test_routes,))
            as stack,
            stack.http(case.token) as http,
        ):
            response = await http.request(
                case.method, case.path, headers=dict(case.headers), content=case.content
            )
            _assert_error(response, case.status, case.code)
            if case.status == 500:
                assert "secret internals" not in response.text
            if case.status == 405:
                assert "GET" in response.headers["Allow"]


async def test_invalid_input_lists_fields() -> None:
    actors = {"primary": StubActor("primary")}
    with trio.fail_after(10):
        async with (
            open_bare_app(actors, StubStore(), blueprints=(test_routes,)) as stack,
            stack.http() as http,
        ):
            response = await http.post("/_test/invalid", json={})
            body = _assert_error(response, 422, "invalid")
            assert body["fields"] == [{
                "path": "orders[0].quantity",
                "rule": "lot_multiple",
                "message": "quantity must be a multiple of 75",
            }]
            ok = await http.post("/_test/echo", json={"a": 1},
                                 headers={"Origin": ALLOWED_ORIGIN})
            assert ok.status_code == 200 and ok.json() == {"got": {"a": 1}}


# -- middleware ------------------------------------------------------------------------


async def test_correlation_id_process_time_and_redacted_logs(
    web_stack: WebStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    secret = TOKENS["primary"]
    with trio.fail_after(10):
        async with web_stack.http() as http:
            response = await http.get(
                f"/accounts/primary/orders?access_token={secret}&x=1",
                headers={"X-Correlation-ID": "req-42"},
            )
            assert response.status_code == 200
            assert response.headers["X-Correlation-ID"] == "req-42"
            assert response.headers["X-Process-Time"].endswith("ms")
            generated = (await http.get("/health")).headers["X-Correlation-ID"]
            assert generated and generated != "req-42"
        async with trio.open_nursery() as nursery:
            ws = await web_stack.connect(nursery, token=None, query=f"access_token={secret}")
            await ws.get_message()
            nursery.cancel_scope.cancel()
    # every line the server logged (the test's own httpx client logs its URLs: not ours)
    lines = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    assert not any(secret in line for line in lines), [ln for ln in lines if secret in ln]
    access = [r for r in caplog.records if "req-42" in r.getMessage()]
    assert access and "access_token=***" in access[0].getMessage()
    assert all(r.correlation_id == "req-42" for r in access)  # type: ignore[attr-defined]
    assert "status=200" in access[0].getMessage()
    assert any("ws open" in line and "access_token=***" in line for line in lines)


async def test_every_log_line_of_a_request_has_its_correlation_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    actors = {"primary": StubActor("primary")}
    with trio.fail_after(10):
        async with (
            open_bare_app(actors, StubStore(), blueprints=(test_routes,)) as stack,
            stack.http() as http,
        ):
            response = await http.get("/_test/boom", headers={"X-Correlation-ID": "boom-1"})
            assert response.status_code == 500
    mine = [r for r in caplog.records if getattr(r, "correlation_id", None) == "boom-1"]
    names = {r.name for r in mine}
    assert {"tests.web", "web.errors", "web.access"} <= names
    assert any(r.exc_info for r in mine if r.name == "web.errors")  # logged, not sent


def test_correlation_id_is_sanitised() -> None:
    assert new_correlation_id("abc-123") == "abc-123"
    assert new_correlation_id("a b<c>\n\rd") == "abcd"
    assert len(new_correlation_id("x" * 200)) == 64
    assert len(new_correlation_id(None)) == 16
    assert len(new_correlation_id("<<>>")) == 16


def test_redact_query() -> None:
    assert redact_query("access_token=s3cret&since=4") == "access_token=***&since=4"
    assert redact_query("ticket=t&TOKEN=x&a=b") == "ticket=***&TOKEN=***&a=b"
    assert redact_query("") == ""


async def test_metrics_render_route_labels(web_stack: WebStack) -> None:
    with trio.fail_after(10):
        async with web_stack.http(TOKENS["primary"]) as http:
            await http.get("/accounts/primary/orders")
            await http.get("/no/such/thing")
            text = (await http.get("/metrics", headers=bearer(METRICS_TOKEN))).text
    assert (
        'http_requests_total{method="GET",route="/accounts/<account_id>/orders",status="200"} 1.0'
        in text
    )
    assert 'route="<unmatched>",status="404"' in text
    assert "/no/such/thing" not in text
    assert 'upstream_connected{account="primary"} 1.0' in text
    assert 'upstream_reconnects_total{account="secondary"} 0.0' in text
    assert 'actor_restarts_total{actor="account:primary"} 0.0' in text
    for name in ("http_request_duration_seconds", "websocket_connections",
                 "websocket_connection_duration_seconds", "order_updates_total",
                 "fanout_latency_seconds", "batch_orders_total", "batch_duration_seconds",
                 "webhook_deliveries_total"):
        assert f"# TYPE {name}" in text


async def test_stream_over_postgres(tmp_path: Path, pg_url: str) -> None:
    async with open_web_stack(tmp_path, accounts=("primary",), store_url=pg_url) as stack:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                reader = Reader(await stack.connect(nursery))
                order_id = await place_market(stack.venue)
                done = await reader.until(lambda m: m.get("order", {}).get("status") == "COMPLETE")
                assert done["order"]["order_id"] == order_id
                seqs = [m["seq"] for m in reader.messages if m["type"] == "order"]
                assert seqs == list(range(1, len(seqs) + 1))
                nursery.cancel_scope.cancel()
            async with stack.http(TOKENS["primary"]) as http:
                assert (await http.get("/health")).json()["store"]["ok"] is True


def test_bearer_header_helper() -> None:
    assert bearer("t") == {"Authorization": "Bearer t"}
