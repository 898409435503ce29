"""The built-in browser page: `/` and `/static/*`, plus the two small routes only it needs.

- `GET /` serves `static/index.html`; `GET /static/<path>` serves the page's files (plain ES
  modules and CSS, no build step). Every file carries an ETag and `Cache-Control: no-cache`, so
  a browser revalidates (a cheap 304) and never runs a stale module after an upgrade.
- `GET /docs`: the API's documentation page (`/redoc` redirects there).
- `GET /me`: who the presented token is: `{"admin", "name", "accounts": [ids it may see]}`.
- `GET /instruments[?q=&exchange=&limit=]`: the instrument master for the basket ticket's
  autocomplete, from the caller's accounts' brokers (NFO and NSE), through the actors'
  instrument cache (`actors.instruments`), one per broker URL: one fetch at a time, refreshed
  daily, a stale copy served if the broker cannot answer.

The caches are `WebDeps.instruments`, the same `InstrumentCaches` the service hands to the order
path: per service, no module state.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
from pathlib import Path
from typing import Any, get_args

import attrs
import trio
from quart import Blueprint, Response, jsonify, redirect, request

from actors.instruments import InstrumentCache, InstrumentCaches, broker_url
from actors.requests import InstrumentsExchange, InstrumentsQuery

from .deps import current_deps, current_web
from .errors import NotFound, ServiceUnavailable
from .routes import authenticate

log = logging.getLogger("web.page")

__all__ = ["page_blueprint"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
EXCHANGES = get_args(InstrumentsExchange)  # the exchanges the page searches
FETCH_TIMEOUT_S = 10.0

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
}
_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

page_blueprint = Blueprint("page", __name__)


# -- static files ------------------------------------------------------------------------


def _static_file(relative: str) -> Path | None:
    """The file under STATIC_DIR that `relative` names, or None (no escaping the folder)."""
    if not relative or "\\" in relative or "\x00" in relative:
        return None
    parts = relative.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    path = STATIC_DIR.joinpath(*parts)
    return path if path.suffix in _TYPES else None


async def _serve_file(path: Path, *, page: bool = False) -> Response:
    try:
        body = await trio.Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise NotFound("no such file") from exc
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "Cache-Control": "no-cache",
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
    }
    if page:
        headers["Content-Security-Policy"] = _PAGE_CSP
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Frame-Options"] = "DENY"
    if etag in _etags(request.headers.get("If-None-Match")):
        return Response(b"", status=304, headers=headers)
    content_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    return Response(body, content_type=content_type or "application/octet-stream",
                    headers=headers)


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {t.strip().removeprefix("W/") for t in header.split(",")}


@page_blueprint.get("/")
async def index() -> Response:
    return await _serve_file(STATIC_DIR / "index.html", page=True)


@page_blueprint.get("/docs")
async def docs() -> Response:
    """The API's documentation: static/docs.js renders /openapi.json and /asyncapi.json."""
    return await _serve_file(STATIC_DIR / "docs.html", page=True)


@page_blueprint.get("/redoc")
async def redoc() -> Response:
    return redirect("/docs", 302)


@page_blueprint.get("/static/<path:relative>")
async def static_file(relative: str) -> Response:
    path = _static_file(relative)
    if path is None:
        raise NotFound("no such file")
    return await _serve_file(path)


async def _app_static(filename: str) -> Response:
    return await static_file(filename)


# -- who am I ----------------------------------------------------------------------------


def _visible_accounts() -> tuple[bool, str, list[str]]:
    identity = authenticate()
    accounts = [a for a in current_deps().actors if identity.may_access(a)]
    return identity.admin, identity.name, accounts


@page_blueprint.get("/me")
async def me() -> Response:
    admin, name, accounts = _visible_accounts()
    return jsonify({"admin": admin, "name": name, "accounts": accounts})


# -- instruments -------------------------------------------------------------------------


@attrs.frozen
class InstrumentRow:
    """One row of the broker's instrument master."""

    tradingsymbol: str = attrs.field(metadata={"doc": "the trading symbol"})
    exchange: str = attrs.field(metadata={"doc": "NFO or NSE"})
    name: str = attrs.field(metadata={"doc": "the underlying's name"})
    instrument_type: str = attrs.field(metadata={"doc": "FUT, CE, PE or EQ"})
    lot_size: int = attrs.field(metadata={"doc": "units per lot"})
    tick_size: float = attrs.field(metadata={"doc": "the price step"})
    expiry: str = attrs.field(metadata={"doc": "ISO date ('' for none)"})
    strike: float = attrs.field(metadata={"doc": "the strike price (0 for none)"})
    freeze_quantity: int | None = attrs.field(default=None, metadata={
        "doc": "the most units one order may carry (the exchange's freeze); null for none"})

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _row(instrument: Any) -> InstrumentRow:
    expiry = instrument.expiry
    return InstrumentRow(
        tradingsymbol=str(instrument.tradingsymbol),
        exchange=str(instrument.exchange),
        name=str(instrument.name or ""),
        instrument_type=str(instrument.instrument_type or ""),
        lot_size=int(instrument.lot_size or 1),
        tick_size=float(instrument.tick_size or 0.05),
        expiry=expiry.isoformat() if hasattr(expiry, "isoformat") else str(expiry or ""),
        strike=float(instrument.strike or 0.0),
        freeze_quantity=instrument.freeze_quantity,
    )


async def _loaded(caches: InstrumentCaches, broker: Any) -> InstrumentCache:
    """The broker's URL's cache, its NFO and NSE masters loaded; refreshed as validation's are
    (once the day's refresh instant passed), a stale copy served if the broker cannot answer."""
    cache = caches.for_broker(broker)
    try:
        with trio.fail_after(FETCH_TIMEOUT_S):
            await cache.load(EXCHANGES)
    except Exception as exc:  # the broker's errors are many; all mean "not now"
        log.warning("instruments of %s: fetch failed: %r", broker_url(broker), exc)
        if not any(cache.loaded(e) for e in EXCHANGES):
            raise ServiceUnavailable("the broker's instrument list is unavailable") from exc
    return cache


@page_blueprint.record_once
def _install(state: Any) -> None:
    app = state.app
    # A Quart app made with the default `static_folder` owns `/static/<path:filename>` (its
    # folder does not exist) and its rule matches before ours: route it to our files.
    if "static" in app.view_functions:
        app.view_functions["static"] = _app_static


@page_blueprint.get("/instruments")
async def instruments() -> Response:
    """`q` (symbol or name, case-insensitive), `exchange`, `limit` (with `q`, 50 by default)."""
    _, _, accounts = _visible_accounts()
    query = current_web().converter.structure(request.args, InstrumentsQuery)
    requested = query.account
    if requested is not None:
        if requested not in accounts:
            raise NotFound(f"unknown account {requested!r}")
        accounts = [requested]
    deps = current_deps()
    caches = [await _loaded(deps.instruments, deps.actors[a].broker) for a in accounts]
    found = deps.instruments.search_index(caches, EXCHANGES).search(query.q, query.exchange)
    if query.limit:
        found = found[:query.limit]
    return jsonify({"instruments": [_row(i).as_json() for i in found]})
