"""`GET /accounts/<id>/option-chain?underlying=&expiry=&strikes=`: the page's option chain.

Read only: the account's broker's instrument master (the cache validation uses) and one quote
call for last prices (`actors.chain`). The query is structured by the converter
(`OptionChainQuery`, a 422 naming each bad parameter); an unknown underlying or expiry is a 422
naming it and listing what there is.
"""

from __future__ import annotations

import trio
from quart import Blueprint, Response, jsonify, request

from actors.calendar import trading_day
from actors.chain import option_chain
from actors.requests import OptionChainQuery

from .deps import current_deps, current_web
from .errors import ServiceUnavailable
from .routes import require_account

__all__ = ["chain_blueprint"]

#: The master's load and the quote call together, at most.
CHAIN_TIMEOUT_S = 10.0

chain_blueprint = Blueprint("chain", __name__, url_prefix="/accounts/<account_id>")


@chain_blueprint.get("/option-chain")
async def chain(account_id: str) -> Response:
    require_account(account_id)
    query = current_web().converter.structure(request.args, OptionChainQuery)
    deps = current_deps()
    broker = deps.actors[account_id].broker
    try:
        with trio.fail_after(CHAIN_TIMEOUT_S):
            found = await option_chain(deps.instruments.for_broker(broker), broker, query,
                                       trading_day)
    except trio.TooSlowError as exc:
        raise ServiceUnavailable("the broker did not answer in time") from exc
    return jsonify(current_web().converter.unstructure(found))
