"""Order routes: batches (all-or-nothing multi-leg), single orders, cancel, modify, exits and
the kill switch.

Handlers authenticate, read the body and hand over to the batch coordinator; it owns the work, so
a client that hangs up never cuts a batch or its rollback short. Every processed batch answers
200 whatever its status: clients retry 5xx, and a retried batch must never place twice. A single
order takes an `Idempotency-Key` too (a retry returns the first order, found by its tag), and an
unknown outcome answers 202 with the tag to look up, not a 5xx that invites a blind retry.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from quart import Blueprint, Response, request

from actors.errors import MalformedRequest
from actors.requests import BatchRequest, ExitRequest, LegRequest, ModifyRequest, body_hash

from .deps import current_deps, current_web
from .errors import BadRequest, FieldError, InvalidInput, ServiceUnavailable
from .inputs import json_object
from .replies import reply
from .routes import require_account

__all__ = ["orders_blueprint"]

T = TypeVar("T")

orders_blueprint = Blueprint("orders", __name__, url_prefix="/accounts/<account_id>")

MAX_IDEMPOTENCY_KEY = 128
#: Broker order ids (Kite's are digits); the id goes into the broker's URL, so nothing else.
ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _coordinator() -> Any:
    coordinator = current_deps().batches
    if coordinator is None:
        raise ServiceUnavailable("the batch coordinator is not running")
    return coordinator


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise BadRequest(f"Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY} printable characters")
    return key


async def _typed_body(model: type[T]) -> tuple[T | MalformedRequest, str]:
    """The body structured into `model` (or its shape problems, which the coordinator lists
    with the rest), and its hash as sent."""
    body = await json_object()
    try:
        request: T | MalformedRequest = current_web().converter.structure(body, model)
    except MalformedRequest as exc:
        request = exc
    return request, body_hash(body)


@orders_blueprint.post("/batch-orders")
async def submit_batch(account_id: str) -> tuple[Response, int]:
    identity = require_account(account_id)
    key = _idempotency_key()
    request, digest = await _typed_body(BatchRequest)
    return reply(await _coordinator().submit(account_id, request, digest, key, identity.name))


@orders_blueprint.post("/basket-margin")
async def basket_margin(account_id: str) -> tuple[Response, int]:
    """The margin and net premium a batch body would need: read only, no Idempotency-Key."""
    require_account(account_id)
    request, _ = await _typed_body(BatchRequest)
    return reply(await _coordinator().basket_margin(account_id, request))


@orders_blueprint.get("/batch-orders/<batch_id>")
async def get_batch(account_id: str, batch_id: str) -> tuple[Response, int]:
    require_account(account_id)
    return reply(await _coordinator().get(account_id, batch_id))


@orders_blueprint.post("/orders")
async def place_order(account_id: str) -> tuple[Response, int]:
    identity = require_account(account_id)
    key = _idempotency_key()
    request, digest = await _typed_body(LegRequest)
    return reply(await _coordinator().place_single(account_id, request, digest, identity.name,
                                                   key))


def _order_id(order_id: str) -> str:
    if not ORDER_ID.fullmatch(order_id):
        raise InvalidInput([FieldError(
            "order_id", "format", "order_id must be 1..64 letters, digits, '-' or '_'"
        )])
    return order_id


@orders_blueprint.delete("/orders/<order_id>")
async def cancel_order(account_id: str, order_id: str) -> tuple[Response, int]:
    identity = require_account(account_id)
    return reply(await _coordinator().cancel_order(account_id, _order_id(order_id),
                                                   identity.name))


@orders_blueprint.put("/orders/<order_id>")
async def modify_order(account_id: str, order_id: str) -> tuple[Response, int]:
    """Kite's modify of an open order: price, quantity, trigger_price, order_type."""
    identity = require_account(account_id)
    _order_id(order_id)
    request, _ = await _typed_body(ModifyRequest)
    return reply(await _coordinator().modify_order(account_id, order_id, request,
                                                   identity.name))


@orders_blueprint.post("/kill")
async def kill(account_id: str) -> tuple[Response, int]:
    identity = require_account(account_id)
    return reply(await _coordinator().kill(account_id, identity.name))


@orders_blueprint.post("/positions/exit")
async def exit_position(account_id: str) -> tuple[Response, int]:
    """Flatten one position (the kill switch's flatten, for one); `Idempotency-Key` as for
    single orders: a retry answers the first exit's report and sends nothing."""
    identity = require_account(account_id)
    key = _idempotency_key()
    request, digest = await _typed_body(ExitRequest)
    return reply(await _coordinator().exit_position(account_id, request, digest,
                                                    identity.name, key))
