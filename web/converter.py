"""The web front's one cattrs converter: typed values in and out of JSON at the boundary.

Built once per app (`create_app` keeps it as `app.converter`), so each app's hooks are its own.
Request bodies structure into `actors.requests` models by the strict shape rules of
`web/shapes.py` (a malformed body raises `MalformedRequest`), query strings by
`web/queries.py` (a bad parameter is a 422); results unstructure into the
bytes clients have always received (fields absent today stay absent).
"""

from __future__ import annotations

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from actors.outcomes import OMITTING, OrderPlaced
from actors.requests import (
    AuditQuery,
    BasketName,
    BatchRequest,
    ExitRequest,
    InstrumentsQuery,
    KiteCallbackQuery,
    LegRequest,
    ModifyRequest,
    OptionChainQuery,
    OrdersQuery,
    OrderStreamQuery,
    SaveBasketRequest,
    WatchRequest,
)

from .queries import (
    structure_audit,
    structure_callback,
    structure_chain,
    structure_instruments,
    structure_orders,
    structure_stream,
)
from .shapes import (
    structure_basket,
    structure_basket_name,
    structure_batch,
    structure_exit,
    structure_leg,
    structure_modify,
)
from .watch import structure_watch

__all__ = ["make_converter"]


def make_converter() -> cattrs.Converter:
    """The converter with the hooks of every request model and every typed result."""
    converter = cattrs.Converter()
    converter.register_structure_hook(LegRequest, structure_leg)
    converter.register_structure_hook(BatchRequest, structure_batch)
    converter.register_structure_hook(ExitRequest, structure_exit)
    converter.register_structure_hook(SaveBasketRequest, structure_basket)
    converter.register_structure_hook(BasketName, structure_basket_name)
    converter.register_structure_hook(ModifyRequest, structure_modify)
    converter.register_structure_hook(InstrumentsQuery, structure_instruments)
    converter.register_structure_hook(AuditQuery, structure_audit)
    converter.register_structure_hook(OptionChainQuery, structure_chain)
    converter.register_structure_hook(OrdersQuery, structure_orders)
    converter.register_structure_hook(OrderStreamQuery, structure_stream)
    converter.register_structure_hook(KiteCallbackQuery, structure_callback)
    converter.register_structure_hook(WatchRequest, structure_watch)
    # A saved basket's legs as a batch takes them: the fields a leg has (never a null `tag`).
    converter.register_unstructure_hook(LegRequest, make_dict_unstructure_fn(
        LegRequest, converter, **{a.name: override(omit_if_default=True)
                                  for a in attrs.fields(LegRequest) if a.default is None}))
    # `replayed` appears only on a retry's answer, as it always has.
    converter.register_unstructure_hook(OrderPlaced, make_dict_unstructure_fn(
        OrderPlaced, converter, replayed=override(omit_if_default=True)))
    # The results' optional fields (`omit_if_none`) are left out when None, as they always were.
    for cls in OMITTING:
        converter.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, converter, **{
            a.name: override(omit_if_default=True)
            for a in attrs.fields(cls) if a.metadata.get("omit_if_none")}))
    return converter
