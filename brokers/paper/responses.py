"""Kite-shaped JSON responses and tolerant body readers."""

from __future__ import annotations

import json
from typing import Any

from quart import Response, request

from .errors import input_error


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, allow_nan=False), status=status,
                    content_type="application/json")


def ok(data: Any) -> Response:
    return json_response({"status": "success", "data": data})


def ok_encoded(data: str) -> Response:
    """`ok` of data already encoded as JSON text."""
    return Response('{"status": "success", "data": ' + data + "}",
                    content_type="application/json")


async def form_body() -> dict[str, str]:
    try:
        return dict((await request.form).items())
    except Exception:
        raise input_error("The request body is not a valid form.") from None


async def json_body() -> Any:
    try:
        return json.loads(await request.get_data(as_text=True))
    except (ValueError, UnicodeDecodeError):
        raise input_error("The request body is not valid JSON.") from None
