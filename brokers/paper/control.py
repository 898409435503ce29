"""The venue's control API under `/_venue/` (no auth; tests and demos only).

Answers use Kite's envelope. `POST /_venue/ltp` `{"NFO:SYMBOL": price}` sets prices and matches;
`POST /_venue/step` `{"steps": n}` advances the simulation n steps (default 1) and matches;
`GET|POST|DELETE /_venue/faults` (see `faults.py`); `POST /_venue/accounts/<id>/expire` and
`/token` (-> `{"access_token": "paper-<id>-<n>"}`); `POST /_venue/session`
`{"open": "HH:MM", "close": "HH:MM"}` or `{"closed": true|false}`; `POST /_venue/reset`;
`POST /_venue/fill/<order_id>` fills a partially filled order's remainder; `GET /_venue/limits`
-> `{"refused": {limit: count}}`, the requests refused with 429 since start (or reset);
`GET /_venue/ticker/connects` -> `{"connected_at": [s, ...], "open": n}`: when each ticker socket
opened (seconds on the venue's clock, oldest first, the latest 100,000) and how many are open;
`POST /_venue/ticker/<account>/frames` `{"frames": ["<text>", ...]}` sends these text frames
as they are to the account's ticker sockets, in order (a broker that pushes what it should not:
malformed or mistyped order updates).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from quart import Response, request
from quart_trio import QuartTrio

from .config import parse_clock
from .errors import input_error
from .faults import parse_faults
from .responses import json_body, ok
from .ticker import CLOSE_FAULT, CLOSE_POLICY

if TYPE_CHECKING:
    from .venue import Venue


def add_control_routes(app: QuartTrio, venue: Venue) -> None:
    engine = venue.engine

    @app.post("/_venue/ltp")
    async def set_ltp() -> Response:
        body = await json_body()
        if not isinstance(body, dict) or not body:
            raise input_error('Expected {"EXCHANGE:SYMBOL": price, ...}.')
        prices = {}
        for key, price in body.items():
            instrument = venue.master.by_key(key)
            if instrument is None:
                raise input_error(f"Unknown instrument {key!r}.")
            if (not isinstance(price, int | float) or isinstance(price, bool)
                    or not math.isfinite(price) or price <= 0):
                raise input_error(f"Invalid price for {key!r}.")
            prices[instrument] = float(price)
        engine.set_prices(prices)
        return ok({i.key: engine.ltp(i) for i in prices})

    @app.post("/_venue/step")
    async def step() -> Response:
        body = await json_body() if await _has_body() else {}
        steps = body.get("steps", 1) if isinstance(body, dict) else None
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 10_000:
            raise input_error('Expected {"steps": n} with 1 <= n <= 10000.')
        for _ in range(steps):
            engine.step_prices()
        return ok({"steps": steps})

    @app.get("/_venue/faults")
    async def get_faults() -> Response:
        return ok(venue.faults.public())

    @app.post("/_venue/faults")
    async def set_faults() -> Response:
        update = parse_faults(await json_body())
        update.apply(venue.faults)
        venue.hub.stalled = venue.faults.stall_ticker
        if update.drop_ticker:
            venue.hub.close_all(CLOSE_FAULT, "dropped by the venue (fault: drop_ticker)")
        return ok(venue.faults.public())

    @app.delete("/_venue/faults")
    async def clear_faults() -> Response:
        venue.faults.clear()
        venue.hub.stalled = False
        return ok(venue.faults.public())

    @app.get("/_venue/ticker/connects")
    async def ticker_connects() -> Response:
        return ok({"connected_at": list(venue.hub.connected_at), "open": venue.hub.count()})

    @app.post("/_venue/ticker/<account>/frames")
    async def push_frames(account: str) -> Response:
        body = await json_body()
        frames = body.get("frames") if isinstance(body, dict) else None
        if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
            raise input_error('Expected {"frames": ["<text frame>", ...]}.')
        for frame in frames:
            venue.hub.publish(account, frame)
        return ok({"account": account, "sent": len(frames), "sockets": venue.hub.count(account)})

    @app.post("/_venue/accounts/<account>/expire")
    async def expire(account: str) -> Response:
        venue.accounts.expire(account)
        venue.hub.close_account(account, CLOSE_POLICY, "access token expired")
        return ok({"account": account, "expired": True})

    @app.post("/_venue/accounts/<account>/token")
    async def new_token(account: str) -> Response:
        return ok({"access_token": venue.accounts.issue(account)})

    @app.post("/_venue/session")
    async def session() -> Response:
        body = await json_body()
        if not isinstance(body, dict):
            raise input_error('Expected {"open": "HH:MM", "close": "HH:MM"} or {"closed": true}.')
        closed = body.get("closed")
        if closed is not None:
            if not isinstance(closed, bool):
                raise input_error("`closed` must be true or false.")
            engine.session.closed = closed
        if "open" in body or "close" in body:
            try:
                opens = parse_clock(str(body.get("open", engine.session.open.isoformat())))
                closes = parse_clock(str(body.get("close", engine.session.close.isoformat())))
            except ValueError as exc:
                raise input_error(str(exc)) from None
            engine.session.open, engine.session.close = opens, closes
            engine.session.closed = bool(closed)
        return ok(engine.session.public())

    @app.get("/_venue/limits")
    async def limits() -> Response:
        return ok(venue.limits.public())

    @app.post("/_venue/reset")
    async def reset() -> Response:
        venue.reset()
        return ok({"reset": True})

    @app.post("/_venue/fill/<order_id>")
    async def fill(order_id: str) -> Response:
        return ok(engine.fill_remainder(order_id).to_kite())


async def _has_body() -> bool:
    return bool((await request.get_data()).strip())
