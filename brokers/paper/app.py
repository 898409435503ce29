"""The Kite Connect v3 face of the venue: REST routes, the ticker websocket, Kite's envelopes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import trio
from quart import Response, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from . import market, ticker
from .control import add_control_routes
from .errors import VenueError, error_envelope, general_error, input_error
from .login import add_login_routes
from .orderform import check_variety, parse_basket, parse_modify, parse_place
from .responses import form_body, json_body, json_response, ok, ok_encoded

if TYPE_CHECKING:
    from .venue import Venue


def create_app(venue: Venue) -> QuartTrio:
    app = QuartTrio("brokers.paper")
    app.config.update(BACKGROUND_TASK_SHUTDOWN_TIMEOUT=0.5, MAX_CONTENT_LENGTH=1 << 20)
    engine, accounts = venue.engine, venue.accounts

    def authenticate() -> str:
        return accounts.authenticate(request.headers.get("Authorization"),
                                     request.headers.get("X-Kite-Version"))

    def reader() -> str:
        """The account of a read (GET, basket margins): counted against its read limit."""
        account = authenticate()
        venue.limits.check_read(account)
        return account

    @app.errorhandler(VenueError)
    async def venue_error(error: VenueError) -> Response:
        return json_response(error.envelope(), error.status)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        kind = "InputException" if status in (400, 413) else "GeneralException"
        message = {404: "Route not found", 405: "Method not allowed"}.get(
            status, error.description or error.name)
        return json_response(error_envelope(kind, message), status)

    @app.errorhandler(Exception)
    async def internal_error(error: Exception) -> Response:
        app.logger.exception("paper venue: internal error", exc_info=error)
        return json_response(error_envelope("GeneralException", "Internal error at the venue."),
                             500)

    @app.after_request
    async def before_answering(response: Response) -> Response:
        await venue.durable()  # nothing is answered before what it reports is on disk
        if venue.faults.latency_ms and not request.path.startswith("/_venue"):
            await trio.sleep(venue.faults.latency_ms / 1000)
        return response

    @app.post("/orders/<variety>")
    async def place_order(variety: str) -> Response:
        account = authenticate()
        venue.limits.check_write(account)
        if venue.faults.count_order():
            raise general_error("Order placement failed at the venue (fault: fail_nth_order); "
                                "no order was created.")
        req = parse_place(variety, await form_body())
        return ok({"order_id": engine.place(account, req)})

    @app.put("/orders/<variety>/<order_id>")
    async def modify_order(variety: str, order_id: str) -> Response:
        account = authenticate()
        venue.limits.check_modify(order_id)
        venue.limits.check_write(account)
        check_variety(variety)
        modified = engine.modify(account, order_id, parse_modify(await form_body()))
        venue.limits.count_modify(order_id)
        return ok({"order_id": modified})

    @app.delete("/orders/<variety>/<order_id>")
    async def cancel_order(variety: str, order_id: str) -> Response:
        account = authenticate()
        venue.limits.check_write(account)
        check_variety(variety)
        return ok({"order_id": engine.cancel(account, order_id)})

    @app.get("/orders")
    async def list_orders() -> Response:
        return ok_encoded(engine.listing.json(reader()))

    @app.get("/orders/<order_id>")
    async def order_history(order_id: str) -> Response:
        return ok_encoded("[" + ", ".join(engine.order(reader(), order_id).history) + "]")

    @app.get("/portfolio/positions")
    async def positions() -> Response:
        rows = [p.to_kite(engine.ltp(p.instrument)) for p in engine.positions(reader())]
        return ok({"net": rows, "day": rows})

    @app.get("/quote/ltp")
    async def ltp() -> Response:
        reader()
        keys = request.args.getlist("i")
        if not keys:
            raise input_error("No instruments given: use ?i=EXCHANGE:TRADINGSYMBOL.")
        data = {}
        for key in keys[:1000]:
            instrument = venue.master.by_key(key)
            if instrument is not None:
                data[key] = {"instrument_token": instrument.instrument_token,
                             "last_price": engine.ltp(instrument)}
        return ok(data)

    @app.get("/user/margins")
    async def user_margins() -> Response:
        equity = _equity_margins(venue, reader())
        return ok({"equity": equity, "commodity": _equity_margins(venue, None)})

    @app.get("/user/margins/<segment>")
    async def user_margins_segment(segment: str) -> Response:
        account = reader()
        if segment not in ("equity", "commodity"):
            raise input_error("Invalid segment: use equity or commodity.")
        return ok(_equity_margins(venue, account if segment == "equity" else None))

    @app.post("/margins/basket")
    async def basket_margins() -> Response:
        account = reader()
        consider = request.args.get("consider_positions", "false").strip().lower()
        if consider not in ("true", "false"):
            raise input_error("Invalid `consider_positions`: use true or false.")
        return ok(engine.basket_margins(account, parse_basket(await json_body()),
                                        consider_positions=consider == "true"))

    @app.get("/instruments")
    async def instruments_all() -> Response:
        return Response(venue.master.to_csv(), content_type="text/csv")

    @app.get("/instruments/<exchange>")
    async def instruments(exchange: str) -> Response:
        return Response(venue.master.to_csv(exchange), content_type="text/csv")

    @app.websocket("/")
    async def ticker_socket() -> Response | None:
        api_key = websocket.args.get("api_key")
        account = accounts.owner(api_key, websocket.args.get("access_token"))
        if account is None:
            return json_response(error_envelope("TokenException", "Invalid credentials."), 403)
        ticks = venue.market.connect(f"{api_key}:{account}")
        if ticks is None:
            limit = venue.config.ticker_connections_per_key
            return json_response(error_envelope(
                "NetworkException",
                f"Too many requests: at most {limit} ticker connections per API key and user.",
            ), 429)
        try:
            await websocket.accept()
            await _serve_socket(venue, account, ticks)
        finally:
            venue.market.disconnect(ticks)
        return None

    add_control_routes(app, venue)
    add_login_routes(app, venue)
    return app


async def _serve_socket(venue: Venue, account: str, ticks: market.TickSubscription) -> None:
    """Order updates (text) and market ticks (binary) on one socket, one send at a time."""
    sub, receive = venue.hub.subscribe(account)
    lock = trio.StrictFIFOLock()

    async def send(data: str | bytes) -> None:
        async with lock:
            await websocket.send(data)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_incoming, venue.market, sub, ticks)
            nursery.start_soon(market.send_ticks, venue.market, ticks, send,
                               lambda: venue.hub.stalled)
            await ticker.pump(venue.hub, receive, send, send)
            nursery.cancel_scope.cancel()
        await websocket.close(sub.close_code, sub.close_reason)
    finally:
        venue.hub.unsubscribe(sub)


async def _read_incoming(
    feed: market.MarketData, sub: ticker.Subscriber, ticks: market.TickSubscription
) -> None:
    """Kite clients send subscribe/unsubscribe/mode messages; what the venue cannot take is
    answered with an error text frame, as Kite does."""
    while True:
        message = await websocket.receive()
        try:
            parsed = json.loads(message)
        except (ValueError, TypeError):
            parsed = None
        try:
            if not isinstance(parsed, dict):
                raise market.SubscriptionError("Invalid message: expected JSON object.")
            feed.handle(ticks, parsed)
        except market.SubscriptionError as exc:
            try:
                sub.send.send_nowait(market.error_frame(str(exc)))
            except (trio.WouldBlock, trio.ClosedResourceError):
                pass


def _equity_margins(venue: Venue, account: str | None) -> dict[str, Any]:
    funds = venue.config.funds if account else 0.0
    used = venue.engine.used_margin(account) if account else None
    span = used.span if used else 0.0
    exposure = used.exposure if used else 0.0
    premium = used.option_premium if used else 0.0
    debits = used.total if used else 0.0
    return {
        "enabled": True,
        "net": round(funds - debits, 2),
        "available": {"adhoc_margin": 0, "cash": funds, "opening_balance": funds,
                      "live_balance": round(funds - debits, 2), "collateral": 0,
                      "intraday_payin": 0},
        "utilised": {"debits": round(debits, 2), "exposure": round(exposure, 2),
                     "m2m_realised": 0, "m2m_unrealised": 0,
                     "option_premium": round(premium, 2), "payout": 0,
                     "span": round(span, 2), "holding_sales": 0, "turnover": 0,
                     "liquid_collateral": 0, "stock_collateral": 0, "delivery": 0},
    }
