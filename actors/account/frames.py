"""The frames an account actor sends its subscribers, each encoded once for all of them.

`order` carries one committed update and its seq (`source`: ticker or reconcile; `event`: an
event-only status such as UPDATE); `snapshot` the book at a seq (every working order, the newest
final ones); `status` the upstream's state. Compact JSON, non-ASCII kept as is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .positions import PositionsReport, PositionView

__all__ = ["order_frame", "positions_frame", "snapshot_frame", "status_frame", "with_watched"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def order_frame(
    account: str, seq: int, payload: Any, *, source: str | None = None, event: str | None = None
) -> str:
    message: dict[str, Any] = {"type": "order", "account": account, "seq": seq}
    if source is not None:
        message["source"] = source
    if event is not None:
        message["event"] = event
    message["order"] = payload
    return _dumps(message)


def status_frame(account: str, upstream: str) -> str:
    return _dumps({"type": "status", "account": account, "upstream": upstream})


def snapshot_frame(
    account: str, seq: int, upstream: str, orders: Sequence[Mapping[str, Any]],
    older_before: str | None = None,
) -> str:
    """`older_before` (only when final orders were left out): the oldest final order shown,
    the cursor of GET /accounts/{id}/orders?before= for the older ones."""
    message = {"type": "snapshot", "account": account, "seq": seq, "upstream": upstream,
               "orders": orders}
    if older_before is not None:
        message["older_before"] = older_before
    return _dumps(message)


def positions_frame(report: PositionsReport) -> str:
    """The positions and P&L: no seq, never replayed, only the latest kept per subscriber."""
    body = {name: getattr(report, name) for name in _REPORT_FIELDS}
    body["positions"] = [{name: getattr(p, name) for name in _POSITION_FIELDS}
                         for p in report.positions]
    return _dumps({"type": "positions", **body})


def with_watched(message: str, watched: Sequence[tuple[str, str, int, float | None]]) -> str:
    """A `positions` message plus one subscriber's watched instruments (exchange,
    tradingsymbol, instrument_token, ltp): the shared encoding with one field appended."""
    rows = [{"exchange": e, "tradingsymbol": s, "instrument_token": t, "ltp": ltp}
            for e, s, t, ltp in watched]
    return message[:-1] + ',"watched":' + _dumps(rows) + "}"


# attrs.asdict, unrolled: a message of a thousand positions is built a few times a second
_REPORT_FIELDS = tuple(f.name for f in attrs.fields(PositionsReport))
_POSITION_FIELDS = tuple(f.name for f in attrs.fields(PositionView))
