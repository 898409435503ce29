"""Saved basket routes: a ticket's legs kept under a name per account (`actors/baskets.py`).

`GET /accounts/<id>/baskets` lists them (names, leg counts, when saved); `GET`, `PUT` (create or
replace) and `DELETE` of `/accounts/<id>/baskets/<name>` act on one. None of them places
anything. The name and the body are structured by the converter (web/shapes.py): every problem
of both is one 422 (`invalid_request`) naming field and rule; an unknown name is a 404.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from actors.baskets import SavedBaskets
from actors.errors import FieldError, InvalidRequest, MalformedRequest
from actors.requests import BasketName, SaveBasketRequest

from .deps import current_deps, current_web
from .inputs import json_object
from .replies import reply
from .routes import require_account

__all__ = ["baskets_blueprint"]

baskets_blueprint = Blueprint("baskets", __name__, url_prefix="/accounts/<account_id>/baskets")


def _baskets() -> SavedBaskets:
    return SavedBaskets(current_deps().store)


def _structure(raw: Any, model: type[Any], problems: list[FieldError]) -> Any:
    """`raw` as `model`, or None with its problems added to `problems`."""
    try:
        return current_web().converter.structure(raw, model)
    except MalformedRequest as exc:
        problems.extend(exc.fields)
        return None


def _name(name: str) -> str:
    """The path's name, checked: a bad one is a 422."""
    problems: list[FieldError] = []
    typed = _structure({"name": name}, BasketName, problems)
    if problems:
        raise InvalidRequest(problems)
    return str(typed.name)


@baskets_blueprint.get("")
async def list_baskets(account_id: str) -> tuple[Response, int]:
    require_account(account_id)
    return reply(await _baskets().summaries(account_id))


@baskets_blueprint.get("/<name>")
async def load_basket(account_id: str, name: str) -> tuple[Response, int]:
    require_account(account_id)
    return reply(await _baskets().load(account_id, _name(name)))


@baskets_blueprint.put("/<name>")
async def save_basket(account_id: str, name: str) -> tuple[Response, int]:
    """Create or replace the basket: stored only, never placed."""
    require_account(account_id)
    problems: list[FieldError] = []  # the name's and the body's, in one answer
    typed = _structure({"name": name}, BasketName, problems)
    body = _structure(await json_object(), SaveBasketRequest, problems)
    if problems:
        raise InvalidRequest(problems)
    return reply(await _baskets().save(account_id, typed.name, body))


@baskets_blueprint.delete("/<name>")
async def delete_basket(account_id: str, name: str) -> tuple[Response, int]:
    require_account(account_id)
    return reply(await _baskets().delete(account_id, _name(name)))
