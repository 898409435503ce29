"""[cluster] fencing in Postgres: the epoch in `account_owner`, checked under a row lock by every
write on behalf of an account (the seq path's append and the batch writes). Two stores on one
database are two nodes; raw asyncpg connections play a write, or a claim, caught mid-transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
import trio
import trio_asyncio

from store import BatchRecord, FencedOut, LegRecord
from tests.fixtures_cluster import postgres_node as node
from tests.fixtures_waits import wait_until


def order(order_id: str) -> dict[str, object]:
    return {"order_id": order_id, "status": "OPEN", "tag": f"t{order_id}"}


def batch(batch_id: str, account: str) -> BatchRecord:
    return BatchRecord(batch_id=batch_id, account=account, idempotency_key=None,
                       request_hash="h", request={}, status="pending",
                       created_at=1.0, updated_at=1.0)


@asynccontextmanager
async def raw(url: str) -> AsyncIterator[Any]:
    """One plain connection: `await q(conn.method, *args)` runs a statement on it."""
    conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(url)
    try:
        yield conn
    finally:
        await trio_asyncio.aio_as_trio(conn.close)()


async def q(method: Any, *args: Any) -> Any:
    return await trio_asyncio.aio_as_trio(method)(*args)


async def waiting_on_a_lock(url: str) -> bool:
    """Some session of this database waits for a row lock right now."""
    async with raw(url) as conn:
        return bool(await q(conn.fetchval,
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND wait_event_type = 'Lock'"))


async def events(url: str, account: str) -> list[int]:
    async with raw(url) as conn:
        rows = await q(conn.fetch, "SELECT seq FROM order_events WHERE account = $1 ORDER BY seq",
                       account)
        return [r["seq"] for r in rows]


async def test_a_claim_fences_the_previous_owner_and_seq_continues(aio_loop: Any,
                                                                    pg_url: str) -> None:
    with trio.fail_after(20):
        async with node(pg_url) as one, node(pg_url) as two:
            assert await one.claim_account("a", "n1") == 1
            assert await one.claim_account("b", "n1") == 1
            assert await one.append_events("a", [order("1"), order("2")]) == [1, 2]
            assert await two.claim_account("a", "n2") == 2
            with pytest.raises(FencedOut) as refused:
                await one.append_events("a", [order("3")])
            assert refused.value.accounts == ("a",)
            # the new owner's seq continues from the store; the old one's other account writes
            assert await two.append_events("a", [order("3")]) == [3]
            assert await one.append_events("b", [order("9")]) == [1]
            assert await events(pg_url, "a") == [1, 2, 3]
            owners = {o["account"]: (o["epoch"], o["node"]) for o in await two.owners()}
            assert owners == {"a": (2, "n2"), "b": (1, "n1")}
            # taken back: the seq cache of the first node is re-read, not reused
            assert await one.claim_account("a", "n1") == 3
            assert await one.append_events("a", [order("4")]) == [4]


async def test_a_fenced_account_in_a_round_fails_alone(aio_loop: Any, pg_url: str) -> None:
    with trio.fail_after(20):
        async with node(pg_url) as one, node(pg_url) as two:
            await one.claim_account("a", "n1")
            await one.claim_account("b", "n1")
            await two.claim_account("a", "n2")
            results: dict[str, Any] = {}

            async def append(account: str, order_id: str) -> None:
                try:
                    results[account] = await one.append_events(account, [order(order_id)])
                except FencedOut as exc:
                    results[account] = exc

            async with trio.open_nursery() as nursery:  # queued together: likely one round
                nursery.start_soon(append, "a", "1")
                nursery.start_soon(append, "b", "2")
            assert isinstance(results["a"], FencedOut) and results["b"] == [1]
            assert await events(pg_url, "a") == []


async def test_a_write_racing_the_increment_cannot_commit_after_it(aio_loop: Any,
                                                                    pg_url: str) -> None:
    """The new owner's bump holds the row; the old owner's append waits for it, then is
    refused: nothing of it is written."""
    with trio.fail_after(20):
        async with node(pg_url) as old, raw(pg_url) as taker:
            assert await old.claim_account("a", "old") == 1
            await q(taker.execute, "BEGIN")
            assert await q(taker.fetchval, "UPDATE account_owner SET epoch = epoch + 1,"
                           " node = 'new' WHERE account = 'a' RETURNING epoch") == 2
            outcome: list[Any] = []

            async def append() -> None:
                try:
                    outcome.append(await old.append_events("a", [order("1")]))
                except FencedOut as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(append)
                await wait_until(lambda: waiting_on_a_lock(pg_url), "the append to wait")
                assert outcome == []  # blocked behind the bump, not committed
                await q(taker.execute, "COMMIT")
            assert isinstance(outcome[0], FencedOut)
            assert await events(pg_url, "a") == []


async def test_the_increment_waits_for_a_write_that_locked_first(aio_loop: Any,
                                                                  pg_url: str) -> None:
    """The old owner's write checked its epoch first: the bump waits until it commits, so the
    write lands before the new epoch, never after."""
    with trio.fail_after(20):
        async with node(pg_url) as new, raw(pg_url) as writer:
            new.stuck_write_s = 60  # this writer is slow, not stuck
            await q(writer.execute, "INSERT INTO account_owner VALUES ('a', 1, 'old', 0)")
            await q(writer.execute, "BEGIN")
            assert await q(writer.fetchval, "SELECT epoch FROM account_owner"
                           " WHERE account = 'a' FOR SHARE") == 1
            await q(writer.execute, "INSERT INTO order_events VALUES ('a', 1, '1', '{}', 0)")
            claimed: list[int] = []

            async def claim() -> None:
                claimed.append(await new.claim_account("a", "new"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(claim)
                await wait_until(lambda: waiting_on_a_lock(pg_url), "the claim to wait")
                assert claimed == []
                await q(writer.execute, "COMMIT")
            assert claimed == [2]
            assert await new.append_events("a", [order("2")]) == [2]  # after the old write


async def test_a_claim_ends_a_write_that_holds_the_row_and_never_ends(aio_loop: Any,
                                                                     pg_url: str) -> None:
    """A previous owner paused mid-write (here: a session that locked the owner row and says
    nothing more; Postgres' idle-in-transaction timeout does not end a session paused between
    the messages of one statement) would hold the takeover for as long as it stays paused: the
    claim ends the sessions it waits for, and its write is never committed."""
    with trio.fail_after(20):
        async with node(pg_url) as new, raw(pg_url) as writer:
            new.stuck_write_s = 0.2
            await q(writer.execute, "INSERT INTO account_owner VALUES ('a', 1, 'old', 0)")
            await q(writer.execute, "BEGIN")
            await q(writer.fetchval, "SELECT epoch FROM account_owner WHERE account = 'a'"
                    " FOR SHARE")
            await q(writer.execute, "INSERT INTO order_events VALUES ('a', 1, '1', '{}', 0)")
            assert await new.claim_account("a", "new") == 2
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError,
                                asyncpg.InternalClientError, OSError)):  # its session ended
                await q(writer.execute, "COMMIT")
            assert await events(pg_url, "a") == []
            assert await new.append_events("a", [order("1")]) == [1]


async def test_batch_writes_are_fenced_and_recovery_sees_only_owned_batches(
    aio_loop: Any, pg_url: str
) -> None:
    with trio.fail_after(20):
        async with node(pg_url) as one, node(pg_url) as two:
            await one.claim_account("a", "n1")
            await one.create_batch(batch("B1", "a"), [LegRecord("B1", 0, "odB1L0", "pending")])
            with pytest.raises(FencedOut):  # never claimed here
                await one.create_batch(batch("B2", "z"), [])
            assert await one.get_batch("B2") is None
            assert [b.batch_id for b, _ in await one.unfinished_batches()] == ["B1"]
            assert len(await two.unfinished_batches()) == 1  # no fencing there yet: all of them
            two.start_fencing()
            assert await two.unfinished_batches() == []  # fencing on, it owns nothing
            await two.claim_account("a", "n2")
            for write in (
                one.update_leg("B1", 0, status="placing"),
                one.update_batch("B1", status="running"),
                one.add_leg(LegRecord("B1", 1, "odB1R1", "pending", kind="reverse")),
            ):
                with pytest.raises(FencedOut):
                    await write
            found = await two.get_batch("B1")
            assert found is not None
            assert found[0].status == "pending" and [leg.status for leg in found[1]] == ["pending"]
            await two.update_leg("B1", 0, status="placing")
            assert [b.batch_id for b, _ in await two.unfinished_batches()] == ["B1"]
            one.drop_account("a")
            assert one.epoch_of("a") is None and two.epoch_of("a") == 2
