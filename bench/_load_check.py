"""What bench/load.py checks after a run: the venue agrees with what the batches answered.

- Positions: per account and symbol, the venue's net quantity (`GET /portfolio/positions`,
  with the account's Kite headers) equals what the answers imply: `success` adds every leg's
  filled quantity, `rolled_back` nothing, `rollback_failed` the exposure it names (one whose
  quantity is unknown is a mismatch: nothing can be claimed about it).
- Orders: every venue order's tag (`od` + the 10-character batch id + ...) names a batch that
  was answered 200 to this account: a batch refused with 503 has no id, so any other order
  means a refused (or unanswered) batch placed something. No order is left working.
- Subscribers: one websocket per account; its `seq` grows by exactly one from the snapshot on,
  and the server never closed it.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import attrs
import httpx
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

FINAL_ORDER = frozenset({"COMPLETE", "CANCELLED", "REJECTED"})


@attrs.define
class Answer:
    """A batch's answer as the client saw it."""

    account: str
    legs: list[dict[str, Any]]  # the orders sent
    http: int | None = None  # None: no answer (a transport error)
    body: dict[str, Any] = attrs.Factory(dict)
    latency_s: float = 0.0

    @property
    def outcome(self) -> str:
        if self.http == 200:
            return str(self.body.get("status"))
        if self.http is None:
            return "no_answer"
        return f"http_{self.http}:{self.body.get('error')}"

    @property
    def refused(self) -> bool:
        return self.http == 503 and self.body.get("error") == "overloaded"


@attrs.define
class Subscriber:
    """One account's websocket: counts gaps in `seq` and closes by the server."""

    account: str
    last_seq: int | None = None
    messages: int = 0
    gaps: int = 0
    closed: str | None = None
    _moved: trio.Event = attrs.Factory(trio.Event)

    async def reach(self, seq: int) -> None:
        """Return once this subscriber has seen `seq`."""
        while (self.last_seq or 0) < seq:
            await self._moved.wait()

    async def run(self, url: str, token: str, *, task_status: Any = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        headers = [("Authorization", f"Bearer {token}")]
        try:
            async with open_websocket_url(url, extra_headers=headers,
                                          max_message_size=2**24) as ws:
                first = True
                while True:
                    raw = await ws.get_message()
                    data = json.loads(raw)
                    for message in data if isinstance(data, list) else [data]:
                        self._see(message)
                    self._moved.set()
                    self._moved = trio.Event()
                    if first:  # the snapshot is in: updates from here on are ours
                        first = False
                        task_status.started()
        except ConnectionClosed as exc:
            self.closed = f"{exc.reason.code} {exc.reason.reason}"

    def _see(self, message: dict[str, Any]) -> None:
        if message.get("type") == "snapshot":
            self.last_seq = message.get("seq")
        elif message.get("type") == "order":
            self.messages += 1
            seq = message["seq"]
            if self.last_seq is not None and seq != self.last_seq + 1:
                self.gaps += 1
            self.last_seq = seq


def _signed(leg: dict[str, Any], quantity: int) -> int:
    return quantity if leg["transaction_type"] == "BUY" else -quantity


def expected_positions(
    answers: Iterable[Answer],
) -> tuple[dict[tuple[str, str], int], list[str]]:
    """Net quantity per (account, symbol) the answers imply, and the answers that left an
    unknown quantity (a `rollback_failed` naming none, or a batch never answered)."""
    net: dict[tuple[str, str], int] = defaultdict(int)
    unknown = []
    for a in answers:
        if a.http is None:
            unknown.append(f"{a.account}: a batch never answered")
        if a.http != 200:  # a refusal or an error with a body placed nothing
            continue
        status = a.body["status"]
        if status in ("success", "partial"):
            for leg, result in zip(a.legs, a.body["legs"], strict=True):
                net[(a.account, leg["tradingsymbol"])] += _signed(leg, result["filled_quantity"])
        elif status == "rollback_failed":
            for item in a.body.get("exposure", []):
                if item["quantity"] is None:
                    unknown.append(f"{a.account} {a.body['batch_id']} {item['tradingsymbol']}: "
                                   f"{_leg_error(a.body, item['index'])}")
                    continue
                net[(a.account, item["tradingsymbol"])] += _signed(item, item["quantity"])
    return {k: v for k, v in net.items() if v}, unknown


async def _leg_error(body: dict[str, Any], index: int) -> str:
    leg = body["legs"][index]
    return str((leg.get("rollback") or {}).get("error") or leg.get("error"))


async def venue_state(
    venue_rest: str, accounts: list[str]
) -> tuple[dict[tuple[str, str], int], dict[str, list[dict[str, Any]]]]:
    """The venue's net positions per (account, symbol) and its orders per account."""
    positions: dict[tuple[str, str], int] = {}
    orders: dict[str, list[dict[str, Any]]] = {}
    async with httpx.AsyncClient(base_url=venue_rest, timeout=30) as client:
        for account in accounts:
            headers = {"X-Kite-Version": "3", "Authorization": f"token paper:paper-{account}"}
            rows = (await client.get("/portfolio/positions", headers=headers)).json()["data"]
            for row in rows["net"]:
                if row["quantity"]:
                    positions[(account, row["tradingsymbol"])] = row["quantity"]
            orders[account] = (await client.get("/orders", headers=headers)).json()["data"]
    return positions, orders


def reconcile(
    answers: list[Answer],
    positions: dict[tuple[str, str], int],
    orders: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """Mismatches between the answers and the venue, counted by kind, with a few examples."""
    expected, unknown = expected_positions(answers)
    kinds: Counter[str] = Counter()
    examples: list[str] = []

    def miss(kind: str, text: str) -> None:
        kinds[kind] += 1
        if len(examples) < 5:
            examples.append(text)

    for key in sorted(set(expected) | set(positions)):
        if expected.get(key, 0) != positions.get(key, 0):
            miss("position", f"{key[0]} {key[1]}: answers imply {expected.get(key, 0)}, "
                             f"venue holds {positions.get(key, 0)}")
    answered = {(a.account, a.body["batch_id"]) for a in answers if a.http == 200}
    for account, rows in orders.items():
        for row in rows:
            tag = row.get("tag") or ""
            if (account, tag[2:12]) not in answered:
                miss("stray_order", f"{account} order {row['order_id']} tag {tag!r} "
                                    f"({row['status']}) belongs to no answered batch")
            if row["status"] not in FINAL_ORDER:
                miss("working_order", f"{account} order {row['order_id']} still {row['status']}")
    for text in unknown:
        miss("unknown_exposure", text)
    return {"mismatches": sum(kinds.values()), "mismatch_kinds": dict(kinds),
            "mismatch_examples": examples}
