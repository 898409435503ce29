"""The fixed cost of one order update: actor + book + store + encode, no subscribers.

A real `AccountActor` on the store under test follows an in-process stream (no socket, no
venue, no websocket: nothing the relay would also pay); each update is pushed only once the
previous one has been committed and reported (`on_update`), so every update pays its own commit
round and the figure is the per-update cost, not a batch's share. CPU is the whole process's
(user+sys, every thread: the SQLite worker's too); latency is from the push to `on_update`,
which the actor calls after the commit and the encode.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from actors.account import AccountActor
from actors.account.config import ActorConfig
from brokers.base import Order
from brokers.kite import parse_order
from store import Store


class _Stream:
    """The pushes the bench feeds, as an `OrderStream` (no market data)."""

    def __init__(self, receive: trio.MemoryReceiveChannel[Order]) -> None:
        self._receive = receive
        self.last_frame_at: float | None = None

    async def __aiter__(self) -> AsyncIterator[Order]:
        async for order in self._receive:
            self.last_frame_at = trio.current_time()
            yield order


class _Broker:
    """Just enough of a `Broker` for an actor to follow `_Stream`: nothing listed, no positions."""

    def __init__(self) -> None:
        self.send, self._receive = trio.open_memory_channel[Order](16)

    @asynccontextmanager
    async def open_stream(self) -> AsyncIterator[_Stream]:
        yield _Stream(self._receive)

    async def orders(self, *, max_age_s: float = 0.0) -> list[Order]:
        return []

    async def positions(self) -> list[Any]:
        return []


def _push(account: str, n: int, status: str) -> Order:
    """A Kite ticker order message (the paper venue's fields), OPEN or COMPLETE."""
    done = status == "COMPLETE"
    return parse_order({
        "user_id": account, "unfilled_quantity": 0 if done else 75, "app_id": 1,
        "checksum": "0" * 64, "placed_by": account, "order_id": f"2400{n:011d}",
        "exchange_order_id": f"1100{n:012d}", "parent_order_id": None, "status": status,
        "status_message": None, "status_message_raw": None,
        "order_timestamp": "2026-11-30 10:00:00",
        "exchange_update_timestamp": f"2026-11-30 10:00:0{1 if done else 0}",
        "exchange_timestamp": "2026-11-30 10:00:00", "variety": "regular", "modified": False,
        "exchange": "NFO", "tradingsymbol": "NIFTY26DECFUT", "instrument_token": 9_000_001,
        "order_type": "MARKET", "transaction_type": "BUY" if n % 2 else "SELL",
        "validity": "DAY", "validity_ttl": 0, "product": "NRML", "quantity": 75,
        "disclosed_quantity": 0, "price": 0, "trigger_price": 0,
        "average_price": 24_000.5 if done else 0, "filled_quantity": 75 if done else 0,
        "pending_quantity": 0 if done else 75, "cancelled_quantity": 0,
        "market_protection": -1, "meta": {}, "tag": f"b{n}", "tags": [f"b{n}"],
        "guid": f"{n:016x}",
    })


async def update_cost(store: Store, account: str, orders: int = 1000) -> dict[str, object]:
    """`orders` orders, OPEN then COMPLETE: 2 x `orders` updates, one at a time."""
    pushes = [_push(account, n, s) for n in range(orders) for s in ("OPEN", "COMPLETE")]
    broker = _Broker()
    committed = trio.Event()
    seqs: list[int] = []

    def on_update(_account: str, seq: int, _payload: dict[str, Any]) -> None:
        seqs.append(seq)
        committed.set()

    actor = AccountActor(account, broker, store, ActorConfig(), on_update=on_update)  # type: ignore[arg-type]
    latencies: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        warm = 20  # connecting (pushes are held meanwhile), first commits: not steady state
        cpu = wall = 0.0
        for i, order in enumerate(pushes):
            if i == warm:
                cpu, wall = time.process_time(), time.perf_counter()
            committed = trio.Event()
            started = time.perf_counter()
            await broker.send.send(order)
            await committed.wait()
            latencies.append(time.perf_counter() - started)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        nursery.cancel_scope.cancel()
    measured = len(pushes) - warm
    steady = sorted(latencies[warm:])
    return {
        "engine": store.engine,
        "scenario": "update_fixed_cost",
        "subscribers": 0,
        "updates": measured,
        "cpu_ms_per_update": round(1000 * cpu / measured, 4),
        "p50_ms": round(1000 * statistics.median(steady), 3),
        "p99_ms": round(1000 * steady[int(len(steady) * 0.99) - 1], 3),
        "updates_per_s": round(measured / wall),
        "gaps": sum(1 for a, b in zip(seqs, seqs[1:], strict=False) if b != a + 1),
        "missing": len(pushes) - len(seqs),
    }
