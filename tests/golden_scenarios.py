"""The scenarios of the golden record (tests/test_golden.py), one per route group.

Each runs against its own fresh service (`open_test_service`: paper venue embedded, SQLite), in
a fixed order, so what one case leaves behind (an order, a batch, an audit entry) is the same at
every run. The venue's instrument master is the built-in one of a fixed day (`MASTER_DAY`), so
symbols and expiries do not follow the calendar. Every route gets a success and its main errors:
401 (no token), 403 (another account's), 404 (unknown account), 422 (with `fields`), 409, 405,
415, 400 (invalid JSON), 503 where it can be reached deterministically.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from actors.orders import BatchConfig
from brokers.paper.instruments import builtin_master
from supervision.service import Running
from tests.fixtures_orders import leg
from tests.fixtures_service import ADMIN, METRICS, TOKENS, open_test_service, venue_control
from tests.fixtures_venue import kite_headers
from tests.fixtures_web import place_market, wait_upstream
from tests.golden_client import Recorder
from web import WebConfig

__all__ = ["GROUPS", "Group", "open_group_service"]

MASTER_DAY = dt.date(2099, 12, 1)  # expiries 2099-12-29 and 2100-01-26
FUT = "NIFTY99DECFUT"
CALL = "NIFTY99DEC24000CE"
PUT = "NIFTY99DEC24000PE"
PRIMARY, SECONDARY = TOKENS["primary"], TOKENS["secondary"]
BATCHES = "/accounts/primary/batch-orders"


async def the_three_denials(rec: Recorder, name: str, method: str, path: str) -> None:
    """401 without a token, 403 with the other account's, 404 for an unknown account."""
    await rec.http(f"{name}: 401 no token", method, path)
    await rec.http(f"{name}: 403 another account", method, path, token=SECONDARY)
    await rec.http(f"{name}: 404 unknown account", method,
                   path.replace("/primary", "/nobody", 1), token=PRIMARY)


async def body_errors(rec: Recorder, name: str, method: str, path: str, token: str) -> None:
    """400 for bytes that are not JSON, 415 for a body that is not JSON at all."""
    await rec.http(f"{name}: 400 invalid json", method, path, token=token, content=b'{"orders": [',
                   headers={"Content-Type": "application/json"})
    await rec.http(f"{name}: 415 form body", method, path, token=token, content=b"a=1",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})


async def book_settled(running: Running, account: str = "primary") -> None:
    """Wait until the account's book shows every order of the venue as the venue does (the
    ticker's pushes arrive after the answers that placed them)."""
    assert running.venue is not None
    async with httpx.AsyncClient(base_url=running.venue.rest_url, timeout=10,
                                 headers=kite_headers(account)) as kite:
        orders = (await kite.get("/orders")).json()["data"]
    want = {o["order_id"]: (o["status"], o["filled_quantity"]) for o in orders}
    actor = running.actors[account]

    def have() -> dict[str, tuple[str, int]]:
        return {o["order_id"]: (o["status"], o["filled_quantity"]) for o in actor.orders()}

    sub = actor.subscribe()
    try:
        with trio.fail_after(10):
            while have() != want:
                await sub.receive.receive()
    finally:
        actor.unsubscribe(sub)


# -- groups --------------------------------------------------------------------------------


async def status_routes(rec: Recorder) -> None:
    for path in ("/health", "/accounts/health/status", "/ws/status"):
        await rec.http(f"{path}: anonymous", "GET", path)
        await rec.http(f"{path}: account", "GET", path, token=PRIMARY)
        await rec.http(f"{path}: 401 wrong token", "GET", path, token="nope")
    await rec.http("/health: admin", "GET", "/health", token=ADMIN)
    await rec.http("/ready", "GET", "/ready")
    await rec.http("/metrics", "GET", "/metrics", token=METRICS)
    await rec.http("/metrics: 401 no token", "GET", "/metrics")
    await rec.http("/metrics: 403 account token", "GET", "/metrics", token=PRIMARY)
    await rec.http("404 no such route", "GET", "/nowhere")
    await rec.http("/health: 405 POST", "POST", "/health")


async def account_routes(rec: Recorder) -> None:
    await rec.http("orders: empty book", "GET", "/accounts/primary/orders", token=PRIMARY)
    await rec.http("orders: admin", "GET", "/accounts/secondary/orders", token=ADMIN)
    await rec.http("orders: access_token query", "GET",
                   f"/accounts/primary/orders?access_token={PRIMARY}")
    await the_three_denials(rec, "orders", "GET", "/accounts/primary/orders")
    await rec.http("orders: 422 before no such order", "GET",
                   "/accounts/primary/orders?before=151220000000000", token=PRIMARY)
    await rec.http("orders: 422 before not an order id", "GET",
                   "/accounts/primary/orders?before=a%20b", token=PRIMARY)
    await rec.http("orders: 422 limit", "GET", "/accounts/primary/orders?before=1&limit=0",
                   token=PRIMARY)
    await rec.http("ws-ticket", "POST", "/accounts/primary/ws-ticket", token=PRIMARY)
    await the_three_denials(rec, "ws-ticket", "POST", "/accounts/primary/ws-ticket")
    await rec.http("ws-ticket: 405 GET", "GET", "/accounts/primary/ws-ticket", token=PRIMARY)
    positions = "/accounts/primary/positions"
    await rec.http("positions: none yet", "GET", positions, token=PRIMARY)
    await the_three_denials(rec, "positions", "GET", positions)
    await rec.http("positions: 405 POST", "POST", positions, token=PRIMARY)
    await rec.http("me: account", "GET", "/me", token=PRIMARY)
    await rec.http("me: admin", "GET", "/me", token=ADMIN)
    await rec.http("me: 401 no token", "GET", "/me")
    await rec.http("instruments: q", "GET", "/instruments?q=NIFTY99DEC2400&limit=3", token=PRIMARY)
    await rec.http("instruments: NSE", "GET", "/instruments?exchange=NSE", token=PRIMARY)
    await rec.http("instruments: 401 no token", "GET", "/instruments")
    await rec.http("instruments: 404 unknown account", "GET", "/instruments?account=nobody",
                   token=ADMIN)
    await rec.http("instruments: 422 limit", "GET", "/instruments?limit=abc", token=PRIMARY)
    await rec.http("instruments: 422 exchange", "GET", "/instruments?exchange=MCX", token=PRIMARY)
    await chain_routes(rec)
    await rec.http("page", "GET", "/")
    await rec.http("page: static script", "GET", "/static/app.js")
    await rec.http("page: static 404", "GET", "/static/nope.js")
    await rec.http("page: 403 foreign origin", "GET", "/",
                   headers={"Origin": "http://evil.example"})
    await session_routes(rec)
    await saved_basket_routes(rec)


async def saved_basket_routes(rec: Recorder) -> None:
    """Save, list, load, replace, delete; the name and body rules; nothing is placed."""
    baskets = "/accounts/primary/baskets"
    one = f"{baskets}/Short strangle"
    strangle = {"orders": [leg(CALL, "SELL"), leg(PUT, "SELL", order_type="LIMIT", price=12.5)]}
    await rec.http("baskets: none yet", "GET", baskets, token=PRIMARY)
    await rec.http("basket: saved", "PUT", one, token=PRIMARY, json_body=strangle)
    await rec.http("basket: replaced", "PUT", one, token=PRIMARY,
                   json_body={"orders": [leg(FUT)]})
    await rec.http("baskets: listed", "GET", baskets, token=PRIMARY)
    await rec.http("basket: loaded", "GET", one, token=PRIMARY)
    await rec.http("basket: 422 name and legs", "PUT", f"{baskets}/%20x", token=PRIMARY,
                   json_body={"orders": [{**leg(FUT), "tag": "mine"}], "execution": "parallel"})
    await rec.http("basket: 422 too long a name", "GET", f"{baskets}/{'x' * 65}",
                   token=PRIMARY)
    await body_errors(rec, "basket", "PUT", one, PRIMARY)
    await the_three_denials(rec, "baskets", "GET", baskets)
    await the_three_denials(rec, "basket", "PUT", one)
    await rec.http("basket: deleted", "DELETE", one, token=PRIMARY)
    await rec.http("basket: 404 deleted again", "DELETE", one, token=PRIMARY)
    await rec.http("basket: 404 unknown", "GET", one, token=PRIMARY)
    await rec.http("basket: 405 POST", "POST", one, token=PRIMARY)


async def chain_routes(rec: Recorder) -> None:
    """The option chain: every strike of the ladder (the window is wider than the master's
    ladder, so the strikes listed do not move with the simulated price), and its 422s."""
    chain = "/accounts/primary/option-chain"
    await rec.http("option chain: NIFTY", "GET", f"{chain}?underlying=NIFTY&strikes=20",
                   token=PRIMARY)
    await rec.http("option chain: 422 parameters", "GET", f"{chain}?expiry=soon&strikes=0",
                   token=PRIMARY)
    await rec.http("option chain: 422 unknown underlying", "GET", f"{chain}?underlying=NOSUCH",
                   token=PRIMARY)
    await rec.http("option chain: 422 unknown expiry", "GET",
                   f"{chain}?underlying=NIFTY&expiry=2001-01-02", token=PRIMARY)
    await the_three_denials(rec, "option chain", "GET", f"{chain}?underlying=NIFTY")


async def session_routes(rec: Recorder) -> None:
    """Sign-in sets the session cookie (the recorder's client keeps it), which only the ticket
    route and the order stream take, from an allowed Origin."""
    own = {"Origin": f"http://{rec.running.web_bind}"}
    await rec.http("session: sign in", "POST", "/session", token=PRIMARY)
    await rec.http("session: 401 no token", "POST", "/session")
    await rec.http("session: 405 GET", "GET", "/session", token=PRIMARY)
    await rec.http("ws-ticket: session cookie", "POST", "/accounts/primary/ws-ticket",
                   headers=own)
    await rec.http("ws-ticket: 403 session cookie without Origin", "POST",
                   "/accounts/primary/ws-ticket")
    await rec.http("ws-ticket: 403 session cookie of another account", "POST",
                   "/accounts/secondary/ws-ticket", headers=own)
    await rec.http("orders: 401 session cookie alone", "GET", "/accounts/primary/orders",
                   headers=own)
    await rec.http("session: 401 sign out without token", "DELETE", "/session")
    await rec.http("session: sign out", "DELETE", "/session", token=PRIMARY)
    rec.cookies.set("orderdesk_session", "signed-out-or-made-up")
    await rec.http("ws-ticket: 401 unknown session", "POST", "/accounts/primary/ws-ticket",
                   headers=own)


async def order_routes(rec: Recorder) -> None:
    async with venue_control(rec.running) as venue:
        batch = {"orders": [leg(FUT), leg(CALL, "SELL")], "rollback_on_failure": True}
        done = await rec.http("batch: success", "POST", BATCHES, token=PRIMARY, json_body=batch,
                              headers={"Idempotency-Key": "golden-1"})
        batch_id = done.json()["batch_id"]
        await rec.http("batch: replayed", "POST", BATCHES, token=PRIMARY, json_body=batch,
                       headers={"Idempotency-Key": "golden-1"})
        await rec.http("batch: 409 key reused", "POST", BATCHES, token=PRIMARY,
                       json_body={**batch, "rollback_on_failure": False},
                       headers={"Idempotency-Key": "golden-1"})
        await rec.http("batch: stored", "GET", f"{BATCHES}/{batch_id}", token=PRIMARY)
        await rec.http("batch: 404 unknown batch", "GET", f"{BATCHES}/abcdefghij",
                       token=PRIMARY)
        await the_three_denials(rec, "batch stored", "GET", f"{BATCHES}/{batch_id}")
        await venue.post("/_venue/faults", json={"reject_symbols": [PUT]})
        await rec.http("batch: rolled back", "POST", BATCHES, token=PRIMARY,
                       json_body={"orders": [leg(FUT), leg(PUT)], "rollback_on_failure": True})
        await venue.delete("/_venue/faults")
        await rec.http("batch: 422 every problem", "POST", BATCHES, token=PRIMARY, json_body={
            "orders": [leg(FUT, quantity=10), leg("NOSUCH"), {**leg(FUT), "order_type": "LIMIT"}],
            "execution": "sideways", "timeout_s": -1})
        await rec.http("batch: 422 no orders", "POST", BATCHES, token=PRIMARY,
                       json_body={"orders": []})
        await rec.http("batch: 422 NaN", "POST", BATCHES, token=PRIMARY,
                       content=b'{"orders": [{"quantity": NaN}]}')
        await rec.http("batch: 400 bad Idempotency-Key", "POST", BATCHES, token=PRIMARY,
                       json_body=batch, headers={"Idempotency-Key": "x" * 200})
        await body_errors(rec, "batch", "POST", BATCHES, PRIMARY)
        await the_three_denials(rec, "batch", "POST", BATCHES)
        await rec.http("batch: 405 PUT", "PUT", BATCHES, token=PRIMARY)
        await basket_margin_routes(rec, batch)

        orders = "/accounts/primary/orders"
        single = leg(FUT, "SELL")
        await rec.http("order: placed", "POST", orders, token=PRIMARY, json_body=single,
                       headers={"Idempotency-Key": "golden-single"})
        await rec.http("order: replayed", "POST", orders, token=PRIMARY, json_body=single,
                       headers={"Idempotency-Key": "golden-single"})
        await rec.http("order: 409 key reused", "POST", orders, token=PRIMARY,
                       json_body={**single, "quantity": 150},
                       headers={"Idempotency-Key": "golden-single"})
        await rec.http("order: 422", "POST", orders, token=PRIMARY,
                       json_body={**single, "quantity": 0, "product": "X"})
        await body_errors(rec, "order", "POST", orders, PRIMARY)
        await the_three_denials(rec, "order", "POST", orders)
        resting = await rec.http("order: resting limit", "POST", orders, token=PRIMARY,
                                 json_body=leg(FUT, order_type="LIMIT", price=20000))
        order_id = resting.json()["order_id"]
        await rec.http("cancel", "DELETE", f"{orders}/{order_id}", token=PRIMARY)
        await rec.http("cancel: again", "DELETE", f"{orders}/{order_id}", token=PRIMARY)
        await rec.http("cancel: 422 order_id", "DELETE", f"{orders}/a.b", token=PRIMARY)
        await rec.http("cancel: unknown order", "DELETE", f"{orders}/999", token=PRIMARY)
        await the_three_denials(rec, "cancel", "DELETE", f"{orders}/{order_id}")
        await book_settled(rec.running)
        await rec.http("orders: book", "GET", orders, token=PRIMARY, unordered="orders")
        await rec.http("kill", "POST", "/accounts/primary/kill", token=PRIMARY)
        await the_three_denials(rec, "kill", "POST", "/accounts/primary/kill")
        await rec.http("kill: 405 GET", "GET", "/accounts/primary/kill", token=PRIMARY)
        await exit_routes(rec, orders)
        await modify_routes(rec, orders)


async def basket_margin_routes(rec: Recorder, batch: dict[str, Any]) -> None:
    """The read-only margin quote: fits, does not fit, invalid legs; nothing placed."""
    margin = "/accounts/primary/basket-margin"
    await rec.http("basket margin: fits", "POST", margin, token=PRIMARY, json_body=batch)
    await rec.http("basket margin: short", "POST", margin, token=PRIMARY,
                   json_body={"orders": [leg(FUT, "SELL", quantity=1800)] * 3})
    await rec.http("basket margin: 422", "POST", margin, token=PRIMARY,
                   json_body={"orders": [leg("NOSUCH")]})
    await body_errors(rec, "basket margin", "POST", margin, PRIMARY)
    await the_three_denials(rec, "basket margin", "POST", margin)


async def exit_routes(rec: Recorder, orders: str) -> None:
    """An exit of a position opened for it, after the kill switch (whose report it leaves
    as it was)."""
    exits = "/accounts/primary/positions/exit"
    position = {"exchange": "NFO", "tradingsymbol": PUT, "product": "NRML"}
    await rec.http("exit: 404 no such position", "POST", exits, token=PRIMARY,
                   json_body=position)
    await rec.http("exit: the order it closes", "POST", orders, token=PRIMARY,
                   json_body=leg(PUT))
    await rec.http("exit: flattened", "POST", exits, token=PRIMARY, json_body=position,
                   headers={"Idempotency-Key": "golden-exit"})
    await rec.http("exit: replayed", "POST", exits, token=PRIMARY, json_body=position,
                   headers={"Idempotency-Key": "golden-exit"})
    await rec.http("exit: 409 key reused", "POST", exits, token=PRIMARY,
                   json_body={**position, "product": "MIS"},
                   headers={"Idempotency-Key": "golden-exit"})
    await rec.http("exit: 422", "POST", exits, token=PRIMARY,
                   json_body={"exchange": "XYZ", "product": "NRML", "quantity": 1})
    await body_errors(rec, "exit", "POST", exits, PRIMARY)
    await the_three_denials(rec, "exit", "POST", exits)


async def modify_routes(rec: Recorder, orders: str) -> None:
    """Modify a resting order, the refusals of a bad body and of a final order; last, so the
    entries recorded before it stay as they were."""
    resting = await rec.http("modify: the order it modifies", "POST", orders, token=PRIMARY,
                             json_body=leg(FUT, order_type="LIMIT", price=20000))
    modified = f"{orders}/{resting.json()['order_id']}"
    await rec.http("modify", "PUT", modified, token=PRIMARY,
                   json_body={"price": 20000.5, "quantity": 150})
    await rec.http("modify: 422", "PUT", modified, token=PRIMARY,
                   json_body={"quantity": 100, "price": 20000.01})
    await rec.http("modify: 422 shape", "PUT", modified, token=PRIMARY,
                   json_body={"quantity": "150", "order_type": "STOP", "side": "SELL"})
    await rec.http("modify: 422 nothing to change", "PUT", modified, token=PRIMARY, json_body={})
    await rec.http("modify: 404 unknown order", "PUT", f"{orders}/999", token=PRIMARY,
                   json_body={"price": 1})
    await body_errors(rec, "modify", "PUT", modified, PRIMARY)
    await the_three_denials(rec, "modify", "PUT", modified)
    await rec.http("modify: its cancel", "DELETE", modified, token=PRIMARY)
    await book_settled(rec.running)
    await rec.http("modify: 409 final order", "PUT", modified, token=PRIMARY,
                   json_body={"price": 20001})


async def overload_routes(rec: Recorder) -> None:
    await rec.http("batch: 503 overloaded", "POST", BATCHES, token=PRIMARY,
                   json_body={"orders": [leg(FUT)]})


async def admin_routes(rec: Recorder) -> None:
    await rec.http("actors", "GET", "/admin/actors", token=ADMIN)
    await rec.http("actors: 401 no token", "GET", "/admin/actors")
    await rec.http("actors: 403 account token", "GET", "/admin/actors", token=PRIMARY)
    await rec.http("restart", "POST", "/admin/accounts/secondary/restart", token=ADMIN)
    await wait_upstream(rec.running.actors["secondary"], "connected")
    await rec.http("restart: 404 unknown account", "POST", "/admin/accounts/nobody/restart",
                   token=ADMIN)
    await rec.http("restart: 403 account token", "POST", "/admin/accounts/secondary/restart",
                   token=SECONDARY)
    credentials = "/admin/accounts/secondary/credentials"
    await rec.http("credentials", "PUT", credentials, token=ADMIN,
                   json_body={"access_token": "paper-secondary"})
    await wait_upstream(rec.running.actors["secondary"], "connected")
    await rec.http("credentials: 422", "PUT", credentials, token=ADMIN, json_body={})
    await rec.http("credentials: 422 not printable", "PUT", credentials, token=ADMIN,
                   json_body={"access_token": "a\tb"})
    await body_errors(rec, "credentials", "PUT", credentials, ADMIN)
    await rec.http("credentials: 404 unknown account", "PUT",
                   "/admin/accounts/nobody/credentials", token=ADMIN,
                   json_body={"access_token": "x"})
    await rec.http("credentials: 405 GET", "GET", credentials, token=ADMIN)
    await rec.http("audit", "GET", "/admin/audit?account=secondary&limit=5", token=ADMIN)
    await rec.http("audit: 422 limit", "GET", "/admin/audit?limit=0", token=ADMIN)
    await rec.http("audit: 403 account token", "GET", "/admin/audit", token=PRIMARY)
    await kite_login(rec)
    await token_rotation(rec)


async def token_rotation(rec: Recorder) -> None:
    tokens = "/admin/accounts/secondary/tokens"
    await rec.http("token rotation: 403 account token", "PUT", f"{tokens}/secondary-desk",
                   token=SECONDARY)
    await rec.http("token rotation: 404 unknown token", "PUT", f"{tokens}/nobody", token=ADMIN)
    await rec.http("token rotation: 404 unknown account", "PUT",
                   "/admin/accounts/nobody/tokens/secondary-desk", token=ADMIN)
    await rec.http("token rotation", "PUT", f"{tokens}/secondary-desk", token=ADMIN)
    await rec.http("token rotation: 401 the old token", "GET", "/accounts/secondary/orders",
                   token=SECONDARY)


async def kite_login(rec: Recorder) -> None:
    login = "/accounts/secondary/kite/login"
    callback = "/accounts/secondary/kite/callback"
    sent = await rec.http("kite login", "GET", login)
    await rec.http("kite login: 404 unknown account", "GET", "/accounts/nobody/kite/login")
    async with httpx.AsyncClient(timeout=10) as browser:  # the operator signs in at the venue
        signed_in = await browser.get(sent.headers["location"])
    assert signed_in.status_code in (302, 303), signed_in.text
    query = httpx.URL(signed_in.headers["location"]).query.decode()
    await rec.http("kite callback", "GET", f"{callback}?{query}")
    await wait_upstream(rec.running.actors["secondary"], "connected")
    await rec.http("kite callback: 400 used token", "GET", f"{callback}?{query}")
    await rec.http("kite callback: 400 login status", "GET", f"{callback}?status=cancelled")
    await rec.http("kite callback: 422 no request_token", "GET", callback)
    await rec.http("kite callback: 404 unknown account", "GET",
                   "/accounts/nobody/kite/callback?request_token=abc")


def _type(kind: str) -> Callable[[dict[str, Any]], bool]:
    return lambda message: message.get("type") == kind


async def websocket_streams(rec: Recorder) -> None:
    stream = "/ws/orders/primary"
    async with rec.websocket("positions: snapshot, status, positions", f"{stream}?positions=1",
                             token=PRIMARY) as ws:
        await ws.until(_type("positions"))
    async with rec.websocket("subscribe: snapshot, status", stream, token=PRIMARY) as ws:
        snapshot = await ws.until(_type("snapshot"))
        await ws.until(_type("status"))
        await ws.send("ping")
        await ws.until(_type("pong"))
        await ws.send('{"type":"ping"}')
        await ws.until(_type("pong"))
        await ws.send("hello")
        await ws.until(_type("error"))
        await ws.send(b"\x00\x01")
        await ws.until(_type("error"))
        venue = rec.running.venue
        assert venue is not None
        await place_market(venue, "primary", symbol="SBIN", tag="golden")
        await ws.until(lambda m: m.get("type") == "order" and m["order"]["status"] == "COMPLETE")
    async with rec.websocket("watch: needs positions=1", stream, token=PRIMARY) as ws:
        await ws.until(_type("status"))
        await ws.send('{"action":"watch","instruments":["NFO:NIFTY26DECFUT"]}')
        await ws.until(_type("error"))
    since = snapshot["seq"]
    async with rec.websocket("since: replay", f"{stream}?since={since}", token=PRIMARY) as ws:
        await ws.until(lambda m: m.get("type") == "order" and m["order"]["status"] == "COMPLETE")
        await ws.until(_type("status"))
    async with rec.websocket("since: ahead, a snapshot", f"{stream}?since=999999",
                             token=PRIMARY) as ws:
        await ws.until(_type("snapshot"))
        await ws.until(_type("status"))
    ticket = await rec.http("ticket", "POST", "/accounts/primary/ws-ticket", token=PRIMARY)
    used = f"{stream}?ticket={ticket.json()['ticket']}"
    async with rec.websocket("ticket: snapshot", used) as ws:
        await ws.until(_type("snapshot"))
    async with rec.websocket("access_token query", f"{stream}?access_token={PRIMARY}") as ws:
        await ws.until(_type("snapshot"))
    for name, path, token in (
        ("4400 since", f"{stream}?since=abc", PRIMARY),
        ("4400 positions", f"{stream}?positions=maybe", PRIMARY),
        ("4401 no token", stream, None),
        ("4401 wrong token", stream, "nope"),
        ("4401 ticket used", used, None),
        ("4403 another account", stream, SECONDARY),
        ("4404 unknown account", "/ws/orders/nobody", PRIMARY),
    ):
        async with rec.websocket(f"refused: {name}", path, token=token) as ws:
            await ws.closed()
    other = await rec.http("ticket: secondary", "POST", "/accounts/secondary/ws-ticket",
                           token=SECONDARY)
    foreign = f"{stream}?ticket={other.json()['ticket']}"
    async with rec.websocket("refused: 4403 ticket of another account", foreign) as ws:
        await ws.closed()

async def contract_routes(rec: Recorder) -> None:
    await rec.http("openapi", "GET", "/openapi.json")
    await rec.http("asyncapi", "GET", "/asyncapi.json")
    await rec.http("docs", "GET", "/docs")
    await rec.http("docs: redoc redirects", "GET", "/redoc")
    await rec.http("docs: static script", "GET", "/static/docs.js")


# -- the table -----------------------------------------------------------------------------


@attrs.frozen
class Group:
    name: str  # tests/golden/<name>.json
    scenario: Callable[[Recorder], Awaitable[None]]
    options: dict[str, Any] = attrs.field(factory=dict)  # more keywords of open_test_service


GROUPS = (
    Group("status", status_routes),
    Group("accounts", account_routes),
    Group("orders", order_routes),
    Group("overload", overload_routes,
          {"batch_config": BatchConfig(session=None, max_batches_per_account=0)}),
    Group("admin", admin_routes),
    Group("websocket", websocket_streams),
    Group("contract", contract_routes),
)


@asynccontextmanager
async def open_group_service(tmp_path: Path, group: Group) -> AsyncIterator[Running]:
    """A fresh service on the fixed instrument master, every account connected."""
    master = tmp_path / "instruments.csv"
    master.write_text(builtin_master(MASTER_DAY, {}).to_csv(), encoding="utf-8")
    venue_toml = f'instruments_csv = "{master}"\nfreeze_limits = {{ NIFTY = 1800 }}'
    # No protocol pings: trio-websocket fails answering one that arrives while it closes.
    web = WebConfig(ping_interval_s=None)
    async with open_test_service(tmp_path, venue_toml=venue_toml, web_config=web,
                                 **group.options) as running:
        with trio.fail_after(10):
            for actor in running.actors.values():
                await wait_upstream(actor, "connected")
        yield running
