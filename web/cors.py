"""CORS for the origins in `[server] allowed_origins`, and for no other.

A front-end served from another origin calls the API with a bearer token: its browser first
asks with a preflight (`OPTIONS` + `Access-Control-Request-Method`), answered here with 204
before any other check (a preflight carries no credentials). Every answer to an allowed
origin, errors included, names it in `Access-Control-Allow-Origin` and exposes the headers a
client reads (`X-Correlation-ID`, `Retry-After`). Credentials (cookies) are never allowed
cross-origin, so there is no `Access-Control-Allow-Credentials`. Any other origin gets no CORS
header: its preflight goes on to the Origin check (403) and the browser blocks the call.
"""

from __future__ import annotations

from collections.abc import Iterable

from quart import Quart, Response, current_app, request

ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key"
EXPOSE_HEADERS = "X-Correlation-ID, Retry-After"
MAX_AGE_S = 600
_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")


def cors_origin(origin: str | None, allowed: Iterable[str]) -> str | None:
    """`origin` as the browser sent it when it is configured (case and a trailing slash of
    the configuration aside), else None."""
    if not origin or origin == "null":
        return None
    wanted = origin.strip().rstrip("/").lower()
    return origin if any(wanted == a.strip().rstrip("/").lower() for a in allowed) else None


def _allowed_methods() -> str:
    """The methods the path answers (all of the API's when it answers none: the actual
    request then gets its 404 with CORS headers, which the client can read)."""
    adapter = current_app.create_url_adapter(request)
    try:
        methods = adapter.allowed_methods() if adapter is not None else []
    except Exception:  # a path the map cannot match at all
        methods = []
    found = [m for m in _METHODS if m in methods] or list(_METHODS)
    return ", ".join(found)


def install_cors(app: Quart) -> None:
    """Install the preflight answer and the response headers; call before the blueprints
    are registered, so the preflight is answered before the Origin check refuses it."""

    def allowed_origin() -> str | None:
        return cors_origin(request.headers.get("Origin"),
                           app.deps.settings.allowed_origins)  # type: ignore[attr-defined]

    @app.before_request
    async def _preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        origin = allowed_origin()
        if origin is None:
            return None  # not ours to allow: the Origin check answers
        response = Response("", status=204)
        response.headers["Access-Control-Allow-Methods"] = _allowed_methods()
        response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = str(MAX_AGE_S)
        return response

    @app.after_request
    async def _cors_headers(response: Response) -> Response:
        response.vary.add("Origin")  # a cache must not give one origin's answer to another
        origin = allowed_origin()
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        return response
