"""Batches (write-ahead + idempotency), the webhook outbox and the audit log on both engines."""

from __future__ import annotations

import attrs
import pytest
import trio

from store import (
    AuditEntry,
    BatchRecord,
    IdempotencyConflict,
    LegRecord,
    NotFound,
    Store,
    StoreError,
    WebhookDelivery,
)


def batch(batch_id: str, key: str | None = "key-1", status: str = "pending") -> BatchRecord:
    return BatchRecord(
        batch_id=batch_id,
        account="acc",
        idempotency_key=key,
        request_hash="h1",
        request={"orders": [{"tradingsymbol": "NIFTY24DEC24000CE", "quantity": 75}]},
        status=status,
        created_at=1000.0,
        updated_at=1000.0,
    )


def legs(batch_id: str, n: int = 2) -> list[LegRecord]:
    return [
        LegRecord(batch_id, i, f"od{batch_id}{i}L0", "pending", request={"leg": i})
        for i in range(n)
    ]


async def test_batch_round_trip(store: Store) -> None:
    with trio.fail_after(10):
        await store.create_batch(batch("B1"), legs("B1"))
        found = await store.get_batch("B1")
        assert found == (batch("B1"), legs("B1"))

        await store.update_leg("B1", 0, status="complete", order_id="O1", detail={"filled": 75})
        await store.update_leg("B1", 1, status="failed")
        reverse = LegRecord(
            "B1", 100, "odB10R0", "pending", request={"reverse_of": 0}, kind="reverse"
        )
        await store.add_leg(reverse)
        await store.update_batch("B1", status="rolling_back")

        got = await store.get_batch("B1")
        assert got is not None
        record, got_legs = got
        assert record.status == "rolling_back" and record.result is None
        assert [(g.index, g.status, g.order_id, g.kind) for g in got_legs] == [
            (0, "complete", "O1", "leg"),
            (1, "failed", None, "leg"),
            (100, "pending", None, "reverse"),
        ]
        assert got_legs[0].detail == {"filled": 75}
        assert [b.batch_id for b, _ in await store.unfinished_batches()] == ["B1"]

        await store.update_batch("B1", status="rolled_back", result={"status": "rolled_back"})
        assert await store.unfinished_batches() == []
        by_key = await store.find_batch("acc", "key-1")
        assert by_key is not None and by_key[0].result == {"status": "rolled_back"}
        assert await store.find_batch("acc", "nope") is None
        assert await store.get_batch("nope") is None


async def test_missing_batch_or_leg_is_not_found(store: Store) -> None:
    with trio.fail_after(10):
        with pytest.raises(NotFound):
            await store.update_batch("nope", status="success")
        with pytest.raises(NotFound):
            await store.update_leg("nope", 0, status="complete")
        with pytest.raises(NotFound):
            await store.add_leg(LegRecord("nope", 0, "t", "pending"))


async def test_idempotency_key_has_exactly_one_winner_under_concurrency(store: Store) -> None:
    winners: list[str] = []
    conflicts: list[IdempotencyConflict] = []

    async def create(i: int) -> None:
        try:
            await store.create_batch(batch(f"B{i}"), legs(f"B{i}"))
            winners.append(f"B{i}")
        except IdempotencyConflict as exc:
            conflicts.append(exc)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(create, i)
    assert len(winners) == 1 and len(conflicts) == 11
    for conflict in conflicts:
        assert conflict.existing.batch_id == winners[0]
        assert [leg.tag for leg in conflict.legs] == [leg.tag for leg in legs(winners[0])]
    # no leg of a loser was written; batches without a key never conflict
    with trio.fail_after(10):
        assert len(await store.unfinished_batches()) == 1
        await store.create_batch(batch("N1", key=None), [])
        await store.create_batch(batch("N2", key=None), [])


async def test_purge_frees_old_keys_of_finished_batches_only(store: Store) -> None:
    with trio.fail_after(10):
        await store.create_batch(batch("B1", key="k1", status="success"), [])
        await store.create_batch(batch("B2", key="k2"), [])  # unfinished: keeps its key
        await store.create_batch(attrs.evolve(batch("B3", key="k3"), created_at=5000.0), [])
        assert await store.purge_idempotency_keys(older_than=2000.0) == 1
        assert await store.find_batch("acc", "k1") is None
        assert await store.find_batch("acc", "k2") is not None
        await store.create_batch(batch("B4", key="k1"), [])  # the key is free again


async def test_discard_deletes_a_running_batch_and_its_legs_and_frees_its_key(
    store: Store,
) -> None:
    with trio.fail_after(10):
        await store.create_batch(batch("D1", key="kd", status="running"), legs("D1"))
        await store.create_batch(batch("D2", key="kf", status="success"), legs("D2"))
        await store.discard_batch("D1")
        await store.discard_batch("D2")  # only a batch still running is discarded
        assert await store.get_batch("D1") is None
        assert await store.find_batch("acc", "kd") is None
        assert await store.get_batch("D2") is not None
        await store.create_batch(batch("D3", key="kd", status="running"), legs("D3"))
        found = await store.get_batch("D3")
        assert found is not None and len(found[1]) == 2


def delivery(event_id: str, url: str = "https://hook.invalid/a") -> WebhookDelivery:
    return WebhookDelivery(event_id, "acc", url, "batch.completed", {"event": event_id})


async def test_webhook_outbox_claim_lease_retry_ack_fail(store: Store) -> None:
    with trio.fail_after(10):
        added = await store.enqueue_webhooks([delivery("e1"), delivery("e2"), delivery("e3")])
        assert added == 3
        assert await store.enqueue_webhooks([delivery("e1"), delivery("e1", url="https://b")]) == 1

        now = 2_000_000_000.0
        claimed = await store.claim_webhooks(limit=2, now=now, lease_s=30)
        assert [(d.event_id, d.attempts) for d in claimed] == [("e1", 1), ("e2", 1)]
        assert claimed[0].payload == {"event": "e1"} and claimed[0].id is not None
        # leased rows are not handed out again until the lease ends
        rest = await store.claim_webhooks(limit=10, now=now + 1, lease_s=30)
        assert sorted(d.event_id for d in rest) == ["e1", "e3"]  # e1 to https://b, and e3
        assert await store.claim_webhooks(limit=10, now=now + 2, lease_s=30) == []

        await store.ack_webhook(claimed[0].id)
        await store.retry_webhook(claimed[1].id, next_attempt_at=now + 100, error="HTTP 503")
        for d in rest:
            await store.fail_webhook(d.id, "gone")  # type: ignore[arg-type]
        assert await store.claim_webhooks(limit=10, now=now + 50, lease_s=30) == []
        again = await store.claim_webhooks(limit=10, now=now + 100, lease_s=30)
        assert [(d.event_id, d.attempts) for d in again] == [("e2", 2)]
        # an expired lease (dispatcher died) makes the row claimable again
        expired = await store.claim_webhooks(limit=10, now=now + 131, lease_s=30)
        assert [(d.event_id, d.attempts) for d in expired] == [("e2", 3)]
        with pytest.raises(NotFound):
            await store.ack_webhook(999_999)


async def test_concurrent_claims_never_share_a_row(store: Store) -> None:
    with trio.fail_after(20):
        await store.enqueue_webhooks([delivery(f"e{i}") for i in range(40)])
        seen: list[int] = []

        async def dispatcher() -> None:
            while batch := await store.claim_webhooks(limit=3, now=2e9, lease_s=60):
                seen.extend(d.id for d in batch)  # type: ignore[misc]

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(dispatcher)
    assert len(seen) == 40 and len(set(seen)) == 40


async def test_webhook_cursor_moves_with_its_outbox_rows_and_never_back(store: Store) -> None:
    with trio.fail_after(10):
        assert await store.webhook_cursor("acc") == 0  # no cursor yet
        await store.append_events("acc", [{"order_id": str(i)} for i in range(3)])
        # created at the account's last seq (webhooks start now), then left as it is
        assert await store.start_webhook_cursor("acc") == 3
        await store.append_events("acc", [{"order_id": "4"}])
        assert await store.start_webhook_cursor("acc") == 3
        assert await store.start_webhook_cursor("acc", 1) == 3
        assert await store.start_webhook_cursor("new") == 0  # no events: from the start
        assert await store.start_webhook_cursor("late", 41) == 41
        assert await store.webhook_cursor("late") == 41

        added = await store.enqueue_webhooks([delivery("order:acc:4")], {"acc": 4, "b": 2})
        assert added == 1
        assert (await store.webhook_cursor("acc"), await store.webhook_cursor("b")) == (4, 2)
        # a stale writer cannot move a cursor back; rows already there are not added again
        assert await store.enqueue_webhooks([delivery("order:acc:4")], {"acc": 3}) == 0
        assert await store.webhook_cursor("acc") == 4
        assert await store.enqueue_webhooks([], {"acc": 9}) == 0  # a cursor alone is written
        assert await store.webhook_cursor("acc") == 9
        assert await store.enqueue_webhooks([]) == 0
        # one transaction: a delivery that cannot be stored leaves the cursor where it was
        bad = attrs.evolve(delivery("order:acc:10"), payload={"x": object()})
        with pytest.raises((StoreError, TypeError)):
            await store.enqueue_webhooks([delivery("order:acc:10", url="https://c"), bad],
                                         {"acc": 10})
        assert await store.webhook_cursor("acc") == 9
        claimed = await store.claim_webhooks(limit=10, now=2e9, lease_s=30)
        assert [(d.event_id, d.url) for d in claimed] == [("order:acc:4", delivery("x").url)]


async def test_audit_round_trip(store: Store) -> None:
    entries = [
        AuditEntry("acc", "batch", "rollback", "O1", {"qty": 75}, 1.0),
        AuditEntry("other", "admin", "kill", None, {}, 2.0),
        AuditEntry("acc", "account:acc", "restart", None, {"reason": "crash"}, 3.0),
    ]
    with trio.fail_after(10):
        for entry in entries:
            await store.record_audit(entry)
        assert await store.list_audit("acc", limit=10) == [entries[2], entries[0]]
        assert await store.list_audit(None, limit=2) == [entries[2], entries[1]]
