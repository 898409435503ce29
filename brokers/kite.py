"""Kite Connect v3 over the wire: REST with httpx, order updates over the ticker websocket.

The same code trades on paper and for real: only the base URLs differ (the paper venue on
loopback, or api.kite.trade / ws.kite.trade). Wire payloads become `brokers.base` types here and
nowhere else.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlencode

import attrs
import cattrs
import httpx
import trio

from . import _ws_client as ws_client
from ._shared import SharedCall
from ._wire import field_readers, make_wire_converter, order_id_of, wire_number
from .base import (
    BasketMargin,
    BrokerError,
    BrokerUnavailable,
    Instrument,
    Order,
    OrderRejected,
    OrderRequest,
    Position,
    RateLimited,
    TokenExpired,
    UpstreamLost,
)
from .kite_stream import KiteOrderStream
from .ticker_reader import TickerReader

log = logging.getLogger(__name__)

# Kite heartbeats every second; its own clients call a socket silent for 5 s dead.
STALL_TIMEOUT_S = 5.0
_DISCONNECT_S = 1.0  # the close handshake of the ticker socket


@attrs.frozen
class KiteSettings:
    """Where and as whom to talk Kite Connect; `access_token` is replaced daily."""

    api_key: str = attrs.field(repr=False)
    access_token: str = attrs.field(repr=False)
    rest_url: str = "https://api.kite.trade"
    ticker_url: str = "wss://ws.kite.trade"
    #: Where the user signs in each morning (the paper venue has a stand-in).
    login_url: str = "https://kite.zerodha.com/connect/login"
    timeout_s: float = 5.0
    stall_timeout_s: float = STALL_TIMEOUT_S


@attrs.frozen
class KiteSession:
    """What the login exchange yields: the day's access token and whose it is."""

    user_id: str
    access_token: str = attrs.field(repr=False)


def session_checksum(api_key: str, request_token: str, api_secret: str) -> str:
    """Kite's checksum of the login exchange: hex SHA-256(api_key + request_token + api_secret)."""
    return hashlib.sha256(f"{api_key}{request_token}{api_secret}".encode()).hexdigest()


_converter = make_wire_converter()


def parse_order(payload: dict[str, Any]) -> Order:
    """A Kite order payload (REST or ticker) as an `Order`, keeping the payload as `raw`.
    Each field read by its own reader (`field_readers`): a listing is the whole day's orders,
    and cattrs' generic structuring was most of its parse."""
    # A null says nothing (the field's default); a missing status refuses the payload.
    fields = {key: read(payload[key]) for key, read in _ORDER_READERS.items()
              if payload.get(key) is not None}
    fields["order_id"] = order_id_of(payload.get("order_id"))
    if payload.get("instrument_token") is not None:  # not an Order field, but the book reads it
        _converter.structure(payload["instrument_token"], int)
    return Order(**fields, raw=payload)


_ORDER_READERS = field_readers(Order, skip=("order_id", "raw"))


def parse_position(payload: dict[str, Any]) -> Position:
    fields = {f.name: payload[f.name] for f in attrs.fields(Position) if f.name in payload}
    return _converter.structure(fields, Position)


def _parse_orders(items: Any) -> list[Order]:
    """A listing's orders; a row we cannot read is logged and skipped, not fatal."""
    if not isinstance(items, list):
        raise BrokerUnavailable(f"expected a list of orders, got {type(items).__name__}")
    orders = []
    for item in items:
        try:
            orders.append(parse_order(item))
        except Exception:
            log.warning("broker listed an order we cannot read: %.200r", item)
    return orders


#: Rows of a listing parsed between two checkpoints (about 3 ms).
_LISTING_SLICE = 250


async def _parse_listing(items: Any) -> list[Order]:
    """`_parse_orders` of `GET /orders`, the whole day's orders: parsed a slice at a time, so
    the other accounts' updates go out in between instead of waiting for the day to parse."""
    if not isinstance(items, list) or len(items) <= _LISTING_SLICE:
        return _parse_orders(items)
    orders = []
    for start in range(0, len(items), _LISTING_SLICE):
        await trio.lowlevel.checkpoint()
        orders.extend(_parse_orders(items[start:start + _LISTING_SLICE]))
    return orders


_INSTRUMENT_FIELDS = tuple(f.name for f in attrs.fields(Instrument))


def parse_instrument(row: dict[str, str]) -> Instrument:
    fields = {key: row[key] for key in _INSTRUMENT_FIELDS if key in row}
    return _converter.structure(fields, Instrument)


@contextmanager
def _readable(what: str) -> Iterator[None]:
    """A payload we cannot read is the broker's failure (BrokerUnavailable, which every caller
    handles), not a crash of the caller."""
    try:
        yield
    except (LookupError, TypeError, ValueError, AttributeError, cattrs.BaseValidationError) as exc:
        raise BrokerUnavailable(f"broker sent {what} we cannot read: {exc!r:.200}") from exc


def error_from_response(status: int, body: Any) -> BrokerError:
    """Kite's error envelope (or whatever came back) as a typed exception."""
    message = f"HTTP {status}"
    error_type = None
    if isinstance(body, dict):
        message = str(body.get("message") or message)
        error_type = body.get("error_type")
    kwargs = {"error_type": error_type, "status": status}
    if error_type == "TokenException":
        return TokenExpired(message, **kwargs)
    if status == 429:
        return RateLimited(message, **kwargs)
    if status >= 500 or error_type == "NetworkException":
        return BrokerUnavailable(message, **kwargs)
    if status == 403 and error_type is None:
        return TokenExpired(message, **kwargs)
    return OrderRejected(message, **kwargs)


class KiteBroker:
    """One account at a Kite-compatible venue. Owns its HTTP client; close with `aclose()`."""

    def __init__(
        self, settings: KiteSettings, *, ssl_context: ssl.SSLContext | None = None,
        before_read: Callable[[], Awaitable[None]] | None = None,
        reader: TickerReader | None = None,
    ):
        """`ssl_context`: share one across accounts (each default context costs ~1 MB);
        `before_read`: awaited before each read (GET, basket margins): the account's read
        budget (Kite: about 10 a second per user); `reader`: the process's one ticker reader
        (None: the stream's consumer reads its socket itself)."""
        self._settings = settings
        self._reader = reader
        self._before_read = before_read
        self._listing = SharedCall(self._list_orders)
        self._ssl_context = ssl_context or ssl.create_default_context()  # REST and wss://
        self._client = httpx.AsyncClient(
            base_url=settings.rest_url,
            timeout=settings.timeout_s,
            headers={"X-Kite-Version": "3", "User-Agent": "orderdesk"},
            verify=self._ssl_context,
        )

    @property
    def settings(self) -> KiteSettings:
        return self._settings

    def set_access_token(self, access_token: str) -> None:
        """Load the day's new token; the next call and the next stream use it."""
        self._settings = attrs.evolve(self._settings, access_token=access_token)

    def _auth(self) -> dict[str, str]:
        s = self._settings
        return {"Authorization": f"token {s.api_key}:{s.access_token}"}

    def login_url(self, **extra: str) -> str:
        """The sign-in page for this account's app (`extra`: the paper venue's stand-in needs
        `user_id` and `redirect_url`; Kite takes the app's registered redirect URL)."""
        query = {"v": "3", "api_key": self._settings.api_key, **extra}
        return f"{self._settings.login_url}?{urlencode(query)}"

    async def exchange_request_token(self, request_token: str, api_secret: str) -> KiteSession:
        """`POST /session/token`: the login's single-use request token for the day's access
        token (TokenExpired when Kite refuses the token or the checksum). Nothing changes here:
        the caller loads the token with `set_access_token` once it accepts the session."""
        form = {
            "api_key": self._settings.api_key,
            "request_token": request_token,
            "checksum": session_checksum(self._settings.api_key, request_token, api_secret),
        }
        data = await self._call("POST", "/session/token", data=form, auth=False)
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            raise BrokerUnavailable("the session answer carries no access_token")
        return KiteSession(str(data.get("user_id", "")), data["access_token"])

    async def _call(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        if self._before_read is not None and (method == "GET" or path == "/margins/basket"):
            await self._before_read()
        headers = self._auth() if auth else {}
        try:
            response = await self._client.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise BrokerUnavailable(f"{method} {path} timed out: outcome unknown") from exc
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(f"{method} {path} failed: {exc!r}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400 or not isinstance(body, dict):
            raise error_from_response(response.status_code, body)
        if body.get("status") != "success":
            raise error_from_response(response.status_code, body)
        return body.get("data")

    async def place(self, request: OrderRequest) -> str:
        data = await self._call("POST", f"/orders/{request.variety}", data=request.form())
        with _readable("an order answer"):  # placed or not: unknown, looked up by tag
            return order_id_of(data["order_id"])

    async def modify(self, order_id: str, *, variety: str = "regular", **changes: Any) -> str:
        form = {key: str(value) for key, value in changes.items() if value is not None}
        data = await self._call("PUT", f"/orders/{variety}/{order_id}", data=form)
        with _readable("an order answer"):  # placed or not: unknown, looked up by tag
            return order_id_of(data["order_id"])

    async def cancel(self, order_id: str, *, variety: str = "regular") -> str:
        data = await self._call("DELETE", f"/orders/{variety}/{order_id}")
        with _readable("an order answer"):  # placed or not: unknown, looked up by tag
            return order_id_of(data["order_id"])

    async def orders(self, *, max_age_s: float = 0.0) -> list[Order]:
        """GET /orders, one in flight: callers asking meanwhile share the next one; with
        `max_age_s`, a listing that started at most that long ago serves as well."""
        return await self._listing.get(max_age_s)

    @property
    def listings(self) -> int:
        """GET /orders calls made (however many callers they served)."""
        return self._listing.calls

    async def _list_orders(self) -> list[Order]:
        return await _parse_listing(await self._call("GET", "/orders"))

    async def order_history(self, order_id: str) -> list[Order]:
        return _parse_orders(await self._call("GET", f"/orders/{order_id}"))

    async def positions(self) -> list[Position]:
        data = await self._call("GET", "/portfolio/positions")
        with _readable("positions"):
            return [parse_position(item) for item in data.get("net", [])]

    async def basket_margins(self, requests: Sequence[OrderRequest]) -> BasketMargin:
        body = [
            {key: value for key, value in attrs.asdict(r).items() if value is not None}
            for r in requests
        ]
        data = await self._call(
            "POST", "/margins/basket", params={"consider_positions": "true"}, json=body
        )
        with _readable("basket margins"):
            return BasketMargin(
                initial=wire_number(data["initial"]["total"]),
                final=wire_number(data["final"]["total"]),
                available=None,
            )

    async def instruments(self, exchange: str | None = None) -> list[Instrument]:
        """Kite's instrument master (CSV, not the JSON envelope)."""
        path = f"/instruments/{exchange}" if exchange else "/instruments"
        if self._before_read is not None:
            await self._before_read()
        try:
            response = await self._client.get(path, headers=self._auth())
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(f"GET {path} failed: {exc!r}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise error_from_response(response.status_code, body)
        with _readable("instruments"):
            return [parse_instrument(row) for row in csv.DictReader(io.StringIO(response.text))]

    async def available_funds(self) -> float:
        data = await self._call("GET", "/user/margins")
        with _readable("margins"):
            return wire_number(data["equity"]["net"])

    async def ltp(self, instruments: Sequence[str]) -> dict[str, float]:
        data = await self._call("GET", "/quote/ltp", params=[("i", i) for i in instruments])
        with _readable("last prices"):
            return {key: wire_number(value["last_price"]) for key, value in data.items()}

    @asynccontextmanager
    async def open_stream(self) -> AsyncIterator[KiteOrderStream]:
        """Connect the ticker; raises TokenExpired on a refused token, UpstreamLost otherwise.
        The handshake is bounded by `timeout_s`; the close handshake, on the way out, by
        `_DISCONNECT_S` (shielded: a cancelled account still closes, and never waits longer)."""
        s = self._settings
        query = urlencode({"api_key": s.api_key, "access_token": s.access_token})
        url = f"{s.ticker_url.rstrip('/')}/?{query}"
        try:
            with trio.fail_after(s.timeout_s):
                ws = await ws_client.connect(
                    url, ssl_context=self._ssl_context, close_timeout_s=_DISCONNECT_S,
                    absorb_heartbeats=True, stall_timeout_s=s.stall_timeout_s,
                )
        except trio.TooSlowError as exc:
            raise UpstreamLost("ticker handshake timed out") from exc
        except ws_client.HandshakeRejected as exc:
            if exc.status_code in (401, 403):
                raise TokenExpired(
                    "ticker refused the access token", status=exc.status_code
                ) from exc
            raise UpstreamLost(f"ticker refused the connection: {exc.status_code}") from exc
        except (OSError, ws_client.HandshakeError) as exc:
            raise UpstreamLost(f"ticker unreachable: {exc!r}") from exc
        if self._reader is not None:
            self._reader.add(ws)
        try:
            yield KiteOrderStream(ws, parse_order)
        finally:
            await ws.aclose()

    def parse_order(self, payload: dict[str, Any]) -> Order:
        """A Kite order payload (REST or ticker; the account's book keeps them) as an `Order`."""
        return parse_order(payload)

    async def aclose(self) -> None:
        await self._client.aclose()
