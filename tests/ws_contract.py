"""Every websocket message a test receives is checked against the documented protocol
(web/ws_protocol.py, served as /asyncapi.json): the shared readers call `check_message`.

The check is stricter than the document on one point: a message may carry no field the
document does not name, so a new field fails here until it is documented.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema

from web.ws_protocol import message_schemas

__all__ = ["check_message"]


@cache
def _validator() -> jsonschema.Draft202012Validator:
    options, components = message_schemas()
    closed = {name: {**schema, "additionalProperties": False}
              for name, schema in components.items()}
    schema = {"components": {"schemas": closed}, "oneOf": options}
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def check_message(message: Any) -> None:
    """AssertionError naming the problem when `message` is not a documented server message."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(message))
    if error is not None:
        raise AssertionError(f"websocket message breaks the documented protocol "
                             f"(/asyncapi.json): {error.message}: {message!r:.300}")
