"""Retention (`Store.prune`) and the paging of finished orders, on both engines (issue 17)."""

from __future__ import annotations

import time

import attrs
import trio

from store import BatchRecord, LegRecord, Pruned, Store


def order(order_id: str, status: str) -> dict[str, object]:
    return {"order_id": order_id, "status": status, "tag": f"t{order_id}"}


def batch(batch_id: str, key: str, status: str, at: float) -> BatchRecord:
    return BatchRecord(batch_id=batch_id, account="acc", idempotency_key=key, request_hash="h",
                       request={"orders": []}, status=status, created_at=at, updated_at=at)


async def test_prune_keeps_the_day_the_last_seq_and_what_is_unfinished(store: Store) -> None:
    with trio.fail_after(20):
        old = [order("1", "COMPLETE"), order("2", "CANCELLED"), order("3", "OPEN")]
        await store.append_events("acc", old)
        await store.append_events("hooked", [order(f"h{n}", "COMPLETE") for n in (1, 2, 3)])
        await store.start_webhook_cursor("hooked", 1)  # seq 2 and 3 not in the outbox yet
        await store.create_batch(batch("B1", "k1", "success", 1000.0),
                                 [LegRecord("B1", 0, "odB1L0", "complete")])
        await store.create_batch(batch("B2", "k2", "placing", 1000.0), [])  # unfinished
        cutoff = time.time()  # "the start of today": everything above is older
        await store.append_events("acc", [order("4", "COMPLETE")])
        await store.create_batch(batch("B3", "k3", "success", cutoff + 1), [])

        pruned = await store.prune(cutoff)

        assert pruned == Pruned(order_events=4, orders=5, batches=1, webhook_outbox=0)
        assert [e.seq for e in await store.read_events("acc", 0)] == [4]
        # the hooked account keeps its last seq and what its webhooks have not taken
        assert [e.seq for e in await store.read_events("hooked", 0)] == [2, 3]
        assert await store.last_seq("acc") == 4
        assert await store.append_events("acc", [order("5", "OPEN")]) == [5]  # never reused
        assert sorted(p["order_id"] for p in await store.load_orders("acc")) == ["3", "4", "5"]
        assert await store.find_batch("acc", "k1") is None
        assert await store.get_batch("B2") is not None
        assert await store.find_batch("acc", "k3") is not None  # today's idempotency key
        assert await store.prune(cutoff) == Pruned()  # nothing more to take


async def test_prune_of_an_account_with_one_event_keeps_it(store: Store) -> None:
    with trio.fail_after(10):
        await store.append_events("solo", [order("1", "COMPLETE")])
        assert (await store.prune(time.time() + 60)).order_events == 0
        assert await store.append_events("solo", [order("2", "OPEN")]) == [2]


async def test_finished_orders_page_in_seq_order_without_duplicates(store: Store) -> None:
    with trio.fail_after(20):
        for n in range(1, 31):
            await store.append_events("acc", [order(str(n), "OPEN")])
        for n in range(1, 31):
            if n % 3:  # every third stays open
                status = ("COMPLETE", "CANCELLED", "REJECTED")[n % 3]
                await store.append_events("acc", [attrs.asdict(_Row(str(n), status))])
        finished = [str(n) for n in range(30, 0, -1) if n % 3]  # settled last first
        seen: list[str] = []
        cursor = finished[0]
        seen.append(cursor)
        while True:
            page = await store.finished_orders("acc", cursor, 7)
            assert page is not None
            if not page:
                break
            seen.extend(str(p["order_id"]) for p in page)
            cursor = str(page[-1]["order_id"])
        assert seen == finished
        assert await store.finished_orders("acc", "nope", 7) is None
        assert await store.finished_orders("other", "1", 7) is None


@attrs.frozen
class _Row:
    order_id: str
    status: str
