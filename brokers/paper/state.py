"""The venue's state on disk: orders (with their status history), positions and the last order id.

Two files: the snapshot `FILE` (the whole state, written to a temporary file, fsync'd and
renamed over it) and the journal `FILE.journal` (one JSON line per save: the orders and positions
changed since the one before, appended and fsync'd). Each carries a sequence number: loading
applies the journal lines newer than the snapshot, so a crash between a new snapshot and the
journal's truncation replays nothing stale. A last line cut short by a crash was never
acknowledged (the venue answers only once the fsync returned, `keeper.py`) and is ignored.
Funds need no entry of their own: the available margin is `funds` less what the restored
positions and open orders use.

Kite lists the current day's orders only: orders of an earlier (IST) day are not restored, their
positions are. A file that cannot be read stops the start with a message naming it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio

from .book import Order, Position
from .changes import Changes
from .config import IST
from .engine import Engine
from .instruments import InstrumentMaster

log = logging.getLogger(__name__)

FORMAT = 1


class StateFileError(Exception):
    """The state file exists but cannot be used; the message names it and says what to do."""


def dump(engine: Engine, seq: int) -> dict[str, Any]:
    """The engine's whole state as JSON-ready data (history lists decoded: the engine keeps
    them as text, and appends)."""
    return {
        "format": FORMAT,
        "seq": seq,
        "last_order_id": engine.ids.last,
        "orders": [_order_dict(o) for o in engine.all_orders()],
        "positions": [_position_dict(p) for p in engine.all_positions()],
    }


def delta(engine: Engine, changes: Changes, seq: int) -> dict[str, Any]:
    """One journal line: the orders and positions in `changes`, serialised now."""
    return {
        "seq": seq,
        "last_order_id": engine.ids.last,
        "orders": [_order_dict(o) for o in changes.orders],
        "positions": [_position_dict(p) for p in changes.positions],
    }


def restore(engine: Engine, doc: dict[str, Any], master: InstrumentMaster) -> None:
    """Put a saved state into a fresh engine: today's orders, every position."""
    today = f"{dt.datetime.now(IST):%Y-%m-%d}"
    orders, positions = [], []
    for row in doc.get("orders", []):
        instrument = master.by_key(row["instrument"])
        if instrument is None or not str(row.get("order_timestamp", "")).startswith(today):
            continue
        history = [json.dumps(state, allow_nan=False) for state in row.get("history", [])]
        orders.append(Order(**{**row, "instrument": instrument, "history": history}))
    for row in doc.get("positions", []):
        instrument = master.by_key(row["instrument"])
        if instrument is None:
            log.warning("venue state: position in %s dropped: not in the instrument master",
                        row["instrument"])
            continue
        positions.append(Position(**{**row, "instrument": instrument}))
    engine.restore(orders, positions, int(doc.get("last_order_id", 0)))


def journal_path(path: str) -> Path:
    return Path(f"{path}.journal")


async def load(path: str) -> dict[str, Any] | None:
    """The saved state (the snapshot with the newer journal lines applied), None when there is
    none yet."""
    return await trio.to_thread.run_sync(_load, path)


def _load(path: str) -> dict[str, Any] | None:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        text = None
    except OSError as exc:
        raise StateFileError(f"venue state file {path}: cannot read it: {exc}") from exc
    lines = _journal_lines(path)
    if text is None and not lines:
        return None
    doc = _snapshot(path, text) if text is not None else {
        "format": FORMAT, "seq": 0, "last_order_id": 0, "orders": [], "positions": []}
    orders = {o["order_id"]: o for o in doc["orders"]}
    positions = {_position_key(p): p for p in doc["positions"]}
    for line in lines:
        if line["seq"] <= doc["seq"]:
            continue
        orders.update((o["order_id"], o) for o in line["orders"])
        positions.update((_position_key(p), p) for p in line["positions"])
        doc["seq"] = line["seq"]
        doc["last_order_id"] = max(int(doc.get("last_order_id", 0)), line["last_order_id"])
    doc["orders"], doc["positions"] = list(orders.values()), list(positions.values())
    return doc


def _snapshot(path: str, text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise StateFileError(f"venue state file {path}: not valid JSON ({exc}); move it away "
                             "to start the venue with no orders or positions") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StateFileError(f"venue state file {path}: not a format-{FORMAT} venue state; move "
                             "it away to start the venue with no orders or positions")
    doc.setdefault("seq", 0)
    return doc


def _journal_lines(path: str) -> list[dict[str, Any]]:
    journal = journal_path(path)
    try:
        raw = journal.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateFileError(f"venue journal {journal}: cannot read it: {exc}") from exc
    lines = []
    for number, line in enumerate(raw, 1):
        if not line:
            continue
        try:
            lines.append(json.loads(line))
        except ValueError as exc:
            if number == len(raw):  # cut short by a crash before its fsync: never acknowledged
                log.warning("venue journal %s: last line incomplete, ignored", journal)
                break
            raise StateFileError(f"venue journal {journal}: line {number} is not valid JSON "
                                 f"({exc}); move it away to start from {path} alone") from exc
    return lines


class StateFiles:
    """The snapshot and the journal, written from a worker thread (blocking calls only)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.journal_bytes = 0
        self._journal: TextIO | None = None

    def write_snapshot(self, doc: dict[str, Any]) -> None:
        """The whole state durable in the snapshot, then the journal emptied."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(doc, file, separators=(",", ":"))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        _fsync_directory(self.path.parent)
        journal = self._open_journal()
        journal.truncate(0)
        os.fsync(journal.fileno())
        self.journal_bytes = 0

    def append(self, line: dict[str, Any]) -> None:
        """One journal line durable (written and fsync'd) before this returns."""
        journal = self._open_journal()
        text = json.dumps(line, separators=(",", ":")) + "\n"
        journal.write(text)
        journal.flush()
        os.fsync(journal.fileno())
        self.journal_bytes += len(text)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _open_journal(self) -> TextIO:
        if self._journal is None:
            self._journal = open(journal_path(str(self.path)), "a", encoding="utf-8")  # noqa: SIM115
            _fsync_directory(self.path.parent)
        return self._journal


def _fsync_directory(directory: Path) -> None:
    """A rename or a new file in `directory` survives a crash only once the directory is synced."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _position_key(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["account"], row["instrument"], row["product"]


def _order_dict(order: Order) -> dict[str, Any]:
    row = attrs.asdict(order, recurse=False)
    row["instrument"] = order.instrument.key
    row["history"] = [json.loads(state) for state in order.history]
    return row


def _position_dict(position: Position) -> dict[str, Any]:
    row = attrs.asdict(position, recurse=False)
    row["instrument"] = position.instrument.key
    return row
