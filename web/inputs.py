"""Client input at the web boundary: the JSON body.

Every route that takes a body reads it with `json_object()` (then structures it with the
converter; query strings go through the converter too, `web/queries.py`). It answers bad
input with a 4xx in the error shape, never a 500:

- a declared Content-Type that is not JSON → 415 (no Content-Type at all is read as JSON, as
  are `application/json` and `application/*+json`, any charset parameter);
- an empty body, bytes that are not UTF-8 JSON, nesting deeper than `MAX_DEPTH`, or a value that
  is not an object → 400 `invalid_json`;
- NaN/Infinity, duplicate keys, unsafe integers, NUL/unpaired surrogates → 422 (strict_json).

`StrictJsonRequest` sends Quart's own `request.get_json()` through the same parser, so a route
that calls it directly cannot 500 on a body either.
"""

from __future__ import annotations

from typing import Any

from quart import request
from quart_trio.wrappers import TrioRequest

from .errors import ApiError, InvalidJson, UnsupportedMediaType
from .strict_json import parse_json

__all__ = ["StrictJsonRequest", "is_json_media_type", "json_object"]

_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number",
          bool: "true/false", type(None): "null"}


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a body with this Content-Type is read as JSON (absent: yes, curl -d's form: no)."""
    if content_type is None or not content_type.strip():
        return True
    mimetype = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = mimetype.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def json_object() -> dict[str, Any]:
    """The request's body as a JSON object, or the 400/415/422 that says why it is not one."""
    content_type = request.headers.get("Content-Type")
    if not is_json_media_type(content_type):
        shown = (content_type or "").partition(";")[0].strip()[:64]
        raise UnsupportedMediaType(f"Content-Type must be application/json, not {shown!r}")
    raw = await request.get_data(cache=True, as_text=False)
    if not raw.strip():
        raise InvalidJson("request body is empty: expected a JSON object")
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise InvalidJson(
            f"request body must be a JSON object, not {_KINDS.get(type(value), 'a value')}"
        )
    return value


class StrictJsonRequest(TrioRequest):
    """Quart's request with `get_json()` parsed strictly (see the module docstring)."""

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if not (force or self.is_json):
            return None
        raw = await self.get_data(cache=cache, as_text=False)
        try:
            return parse_json(raw)
        except ApiError:
            if silent:
                return None
            raise
