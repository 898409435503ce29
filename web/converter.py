"""The web front's one cattrs converter: typed values in and out of JSON at the boundary.

Built once per app (`create_app` keeps it as `app.converter`), so each app's hooks are its own.
"""

from __future__ import annotations

import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from actors.outcomes import OrderPlaced

__all__ = ["make_converter"]


def make_converter() -> cattrs.Converter:
    """The converter with the hooks of every typed value the routes answer with."""
    converter = cattrs.Converter()
    # `replayed` appears only on a retry's answer, as it always has.
    converter.register_unstructure_hook(OrderPlaced, make_dict_unstructure_fn(
        OrderPlaced, converter, replayed=override(omit_if_default=True)))
    return converter
