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


@attrs.define
class Expected:
    """What the answers imply at the venue."""

    net: dict[tuple[str, str], int] = attrs.Factory(lambda: defaultdict(int))
    # (account, symbol) -> how far an unknown exposure may move it (signed, "at most")
    at_most: dict[tuple[str, str], int] = attrs.Factory(lambda: defaultdict(int))
    unknown: list[str] = attrs.Factory(list)  # what each unknown exposure's answer said
    unanswered: int = 0  # batches never answered, even when asked again with their key


def expected_positions(answers: Iterable[Answer]) -> Expected:
    """`success` adds each leg's fills, `rolled_back` nothing, `rollback_failed` its named
    exposure; an exposure of unknown quantity (`quantity_at_most`) is kept apart."""
    out = Expected()
    for a in answers:
        out.unanswered += a.http is None
        if a.http != 200:  # a refusal or an error with a body placed nothing
            continue
        status = a.body["status"]
        if status in ("success", "partial"):
            for leg, result in zip(a.legs, a.body["legs"], strict=True):
                out.net[(a.account, leg["tradingsymbol"])] += _signed(
                    leg, result["filled_quantity"])
        elif status == "rollback_failed":
            for item in a.body.get("exposure", []):
                key = (a.account, item["tradingsymbol"])
                if item["quantity"] is None:
                    out.at_most[key] += _signed(item, item.get("quantity_at_most") or 0)
                    out.unknown.append(f"{a.account} {a.body['batch_id']} {key[1]}: "
                                       f"{_leg_error(a.body, item['index'])}")
                else:
                    out.net[key] += _signed(item, item["quantity"])
    return out


def _leg_error(body: dict[str, Any], index: int) -> str:
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
    """Mismatches between the answers and the venue, counted by kind, with a few examples.
    A position off by no more than an unknown exposure named for it is no mismatch: it is
    counted in `unknown_exposure` (what the answers said is kept in `unknown_examples`)."""
    expected = expected_positions(answers)
    kinds: Counter[str] = Counter()
    examples: list[str] = []

    def miss(kind: str, text: str) -> None:
        kinds[kind] += 1
        if len(examples) < 5:
            examples.append(text)

    for key in sorted(set(expected.net) | set(positions)):
        implied, held = expected.net.get(key, 0), positions.get(key, 0)
        bound = expected.at_most.get(key, 0)
        if implied != held and not 0 <= (held - implied) * (1 if bound > 0 else -1) <= abs(bound):
            miss("position", f"{key[0]} {key[1]}: answers imply {implied}"
                             f"{f' (unknown: at most {bound} more)' if bound else ''}, "
                             f"venue holds {held}")
    answered = {(a.account, a.body["batch_id"]) for a in answers if a.http == 200}
    for account, rows in orders.items():
        for row in rows:
            tag = row.get("tag") or ""
            if (account, tag[2:12]) not in answered:
                miss("stray_order", f"{account} order {row['order_id']} tag {tag!r} "
                                    f"({row['status']}) belongs to no answered batch")
            if row["status"] not in FINAL_ORDER:
                miss("working_order", f"{account} order {row['order_id']} still {row['status']}")
    for _ in range(expected.unanswered):
        miss("unanswered", "a batch got no answer, even when asked again with its key")
    return {"mismatches": sum(kinds.values()), "mismatch_kinds": dict(kinds),
            "mismatch_examples": examples, "unknown_exposure": len(expected.unknown),
            "unknown_examples": expected.unknown[:3]}
