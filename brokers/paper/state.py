"""The venue's state on disk: orders (with their status history), positions and the last order id.

With `VenueConfig.state_file` set, the venue loads the file at start and saves it after every
change: the file is written whole to a temporary file beside it and renamed over it (atomic), in
a worker thread so the event loop never waits on the disk; changes made meanwhile are coalesced
into the next write, and a last write happens at shutdown. Funds need no entry of their own: the
available margin is `funds` less what the restored positions and open orders use.

Kite lists the current day's orders only: orders of an earlier (IST) day are not restored, their
positions are. A file that cannot be read stops the start with a message naming it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any

import attrs
import trio

from .book import Order, Position
from .config import IST
from .engine import Engine
from .instruments import InstrumentMaster

log = logging.getLogger(__name__)

FORMAT = 1
#: How long the last write at shutdown may take.
FINAL_WRITE_S = 5.0


class StateFileError(Exception):
    """The state file exists but cannot be used; the message names it and says what to do."""


def dump(engine: Engine) -> dict[str, Any]:
    """The engine's state as JSON-ready data (history lists copied: the engine appends to them)."""
    return {
        "format": FORMAT,
        "last_order_id": engine.ids.last,
        "orders": [_order_dict(o) for o in engine.all_orders()],
        "positions": [_position_dict(p) for p in engine.all_positions()],
    }


def restore(engine: Engine, doc: dict[str, Any], master: InstrumentMaster) -> None:
    """Put a saved state into a fresh engine: today's orders, every position."""
    today = f"{dt.datetime.now(IST):%Y-%m-%d}"
    orders, positions = [], []
    for row in doc.get("orders", []):
        instrument = master.by_key(row["instrument"])
        if instrument is None or not str(row.get("order_timestamp", "")).startswith(today):
            continue
        orders.append(Order(**{**row, "instrument": instrument}))
    for row in doc.get("positions", []):
        instrument = master.by_key(row["instrument"])
        if instrument is None:
            log.warning("venue state: position in %s dropped: not in the instrument master",
                        row["instrument"])
            continue
        positions.append(Position(**{**row, "instrument": instrument}))
    engine.restore(orders, positions, int(doc.get("last_order_id", 0)))


async def load(path: str) -> dict[str, Any] | None:
    """The saved state, None when there is no file yet."""
    try:
        text = await trio.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"venue state file {path}: cannot read it: {exc}") from exc
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise StateFileError(f"venue state file {path}: not valid JSON ({exc}); move it away "
                             "to start the venue with no orders or positions") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StateFileError(f"venue state file {path}: not a format-{FORMAT} venue state; move "
                             "it away to start the venue with no orders or positions")
    return doc


async def keep(engine: Engine, path: str) -> None:
    """Save the engine's state after every change until cancelled, then once more."""
    try:
        while True:
            await engine.wait_changed()
            try:
                await _save(engine, path)
            except OSError:  # a full disk must not stop the venue; the next change retries
                log.exception("venue state file %s: could not write it", path)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(FINAL_WRITE_S):
            try:
                await _save(engine, path)
            except OSError:
                log.exception("venue state file %s: could not write it at shutdown", path)


async def _save(engine: Engine, path: str) -> None:
    doc = dump(engine)
    await trio.to_thread.run_sync(_write_atomically, Path(path), doc)


def _write_atomically(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(doc, file, separators=(",", ":"))
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _order_dict(order: Order) -> dict[str, Any]:
    row = attrs.asdict(order, recurse=False)
    row["instrument"] = order.instrument.key
    row["history"] = list(order.history)
    return row


def _position_dict(position: Position) -> dict[str, Any]:
    row = attrs.asdict(position, recurse=False)
    row["instrument"] = position.instrument.key
    return row
