"""[cluster] acquisition in rounds: one Redis round tries the lease of every account a node waits
for, one statement claims the epochs of those taken (the old owner's writes refused from its
commit) and one read gives their actors' start; a key about to expire is tried when it does,
not at the next period; a lease taken for an owner that stopped waiting is given up. Real
Redis and Postgres, in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
import trio
import trio_asyncio

from store import AccountState, BatchRecord, FencedOut
from store.postgres import PostgresStore
from supervision.acquisition import Acquirer, Attempt
from supervision.lease import Leases, open_leases
from supervision.renewal import Renewer
from tests.fixtures_cluster import cluster_settings
from tests.fixtures_cluster import postgres_node as node
from tests.fixtures_waits import wait_until


def order(order_id: str) -> dict[str, object]:
    return {"order_id": order_id, "status": "OPEN", "tag": f"t{order_id}"}


@asynccontextmanager
async def acquiring(leases: Leases, store: PostgresStore) -> AsyncIterator[Acquirer]:
    """`leases`' node acquiring, its rounds running (from the start, or `run` left to the
    test when it must queue the waiters first)."""
    acquirer = Acquirer(leases, Renewer(leases), store)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(acquirer.run)
        yield acquirer
        nursery.cancel_scope.cancel()


async def test_a_batch_claim_bumps_each_epoch_and_refuses_the_old_owners_writes(
    aio_loop: Any, pg_url: str
) -> None:
    with trio.fail_after(20):
        async with node(pg_url) as old, node(pg_url) as new:
            assert await old.claim_accounts(["a", "c"], "old") == {"a": 1, "c": 1}
            assert await old.append_events("a", [order("1")]) == [1]
            assert await new.claim_accounts(["b", "a", "a"], "new") == {"a": 2, "b": 1}
            with pytest.raises(FencedOut):
                await old.append_events("a", [order("2")])
            with pytest.raises(FencedOut):
                await old.create_batch(BatchRecord(
                    batch_id="x", account="a", idempotency_key=None, request_hash="h",
                    request={}, status="pending", created_at=1.0, updated_at=1.0), [])
            assert await new.append_events("a", [order("2")]) == [2]  # the seq continues
            assert await old.append_events("c", [order("3")]) == [1]  # not claimed: still old's
            owners = {o["account"]: (o["epoch"], o["node"]) for o in await new.owners()}
            assert owners == {"a": (2, "new"), "b": (1, "new"), "c": (1, "old")}


async def test_one_read_starts_many_actors_as_their_own_reads_would(
    aio_loop: Any, pg_url: str
) -> None:
    with trio.fail_after(20):
        async with node(pg_url) as store:
            await store.claim_accounts(["a", "b", "c"], "n")
            for i in range(5):  # order 1 updated last: it comes last
                await store.append_events("a", [order(str(i % 3)), order("1")])
            await store.append_events("c", [order("9")])
            states = await store.load_accounts(["c", "a", "b"], recent=3)
            assert sorted(states) == ["a", "b", "c"]
            for account in ("a", "c"):
                seq = await store.last_seq(account)
                assert states[account] == AccountState(
                    await store.load_orders(account), seq,
                    await store.read_events(account, max(0, seq - 3)))
            assert states["a"].seq == 10 and [e.seq for e in states["a"].recent] == [8, 9, 10]
            assert [o["order_id"] for o in states["a"].orders] == ["2", "0", "1"]
            assert states["b"] == AccountState([], 0, [])
            assert (await store.load_accounts(["a"], recent=0))["a"].recent == []


async def test_one_round_takes_every_free_lease_and_claims_them_together(
    aio_loop: Any, pg_url: str, key_prefix: str
) -> None:
    accounts = [f"acc{i:02d}" for i in range(20)]
    with trio.fail_after(20):
        async with (open_leases(cluster_settings(key_prefix, "a", renew_s=5.0)) as a,
                    open_leases(cluster_settings(key_prefix, "b")) as b,
                    node(pg_url) as store):
            assert await b.acquire("acc07") is not None  # b's: a must not take it
            await a.acquire_all(["acc07"])  # the script loaded (a new Redis has not seen it)
            calls = a.calls.copy()
            loads: list[list[str]] = []

            async def prepare(accounts: list[str]) -> dict[str, AccountState]:
                loads.append(accounts)
                return await store.load_accounts(accounts, 10)

            acquirer = Acquirer(a, Renewer(a), store, prepare)
            attempts: dict[str, Attempt] = {}

            async def take(account: str) -> None:
                attempts[account] = await acquirer.take(account)

            async with trio.open_nursery() as nursery:
                for account in accounts:
                    nursery.start_soon(take, account)
                await wait_until(lambda: acquirer.statistics()["waiting"] == len(accounts),
                                 "every account waiting")
                nursery.start_soon(acquirer.run)  # its first round: all twenty at once
                await wait_until(lambda: len(attempts) == len(accounts), "the round's answers")
                nursery.cancel_scope.cancel()
            spent = a.calls - calls
            assert acquirer.rounds == 1 and spent == {"acquire_round": 1}, spent
            held = attempts.pop("acc07")
            assert held.lease is None and held.epoch is None and held.holder == "b"
            assert held.loaded is None
            assert all(t.lease is not None and t.epoch == 1 for t in attempts.values())
            assert loads == [sorted(attempts)]  # one read for the actors of the round
            assert all(t.loaded == AccountState([], 0, []) for t in attempts.values())
            owners = {o["account"]: o["node"] for o in await store.owners()}
            assert owners == dict.fromkeys(attempts, "a")
            assert sorted(store.epoch_of(x) for x in attempts) == [1] * len(attempts)


async def test_a_key_about_to_expire_is_tried_when_it_does(
    aio_loop: Any, pg_url: str, key_prefix: str
) -> None:
    """a's period is 5 s; b's lease (0.8 s) ends long before: a takes it then, in a round
    timed by the ttl the first round read, with no round in between."""
    with trio.fail_after(4):
        async with (open_leases(cluster_settings(key_prefix, "a", renew_s=5.0)) as a,
                    open_leases(cluster_settings(key_prefix, "b", lease_s=0.8, renew_s=0.2,
                                                 margin_s=0.2)) as b,
                    node(pg_url) as store, acquiring(a, store) as acquirer):
            assert await b.acquire("acc") is not None
            first = await acquirer.take("acc", at_once=True)
            assert first.lease is None and first.holder == "b"
            started = trio.current_time()
            taken = await acquirer.take("acc")
            assert taken.lease is not None and taken.epoch == 1
            assert trio.current_time() - started < 1.0 and acquirer.rounds == 2
            assert (await a.holder("acc"))[0] == "a"


async def test_a_lease_taken_for_an_owner_that_stopped_waiting_is_given_up(
    aio_loop: Any, pg_url: str, key_prefix: str
) -> None:
    """The owner is cancelled while its round claims the epoch (held up by a row lock):
    once the claim is through, the lease is released, not renewed, and not written for."""
    with trio.fail_after(20):
        async with (open_leases(cluster_settings(key_prefix, "a")) as a,
                    node(pg_url) as store, acquiring(a, store) as acquirer):
            await store.claim_account("acc", "earlier")
            store.drop_account("acc")
            conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(pg_url)
            try:
                await trio_asyncio.aio_as_trio(conn.execute)("BEGIN")
                await trio_asyncio.aio_as_trio(conn.execute)(
                    "SELECT * FROM account_owner WHERE account = 'acc' FOR UPDATE")
                with trio.move_on_after(0.5):  # the round is in its claim by then
                    await acquirer.take("acc", at_once=True)
                assert (await a.holder("acc"))[0] == "a"  # taken, owner gone
                await trio_asyncio.aio_as_trio(conn.execute)("ROLLBACK")
            finally:
                await trio_asyncio.aio_as_trio(conn.close)()
            await wait_until(lambda: a.calls["release"] == 1, "the lease given up")
            assert await a.holder("acc") == (None, None)
            assert store.epoch_of("acc") is None
            assert acquirer.statistics()["waiting"] == 0


async def test_an_account_placed_elsewhere_is_tried_after_the_grace_one_held_back_never(
    aio_loop: Any, pg_url: str, key_prefix: str
) -> None:
    placed_here = {"mine"}
    held_back = {"busy"}
    with trio.fail_after(20):
        async with (open_leases(cluster_settings(key_prefix, "n", renew_s=0.05)) as leases,
                    node(pg_url) as store):
            store.start_fencing()
            acquirer = Acquirer(leases, Renewer(leases), store,
                                placed_here=placed_here.__contains__, grace_s=0.5,
                                held_back=held_back.__contains__)
            taken: dict[str, float] = {}

            async def take(account: str) -> None:
                attempt = await acquirer.take(account)
                assert attempt.lease is not None and attempt.epoch is not None
                taken[account] = trio.current_time()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(acquirer.run)
                started = trio.current_time()
                for account in ("mine", "elsewhere", "busy"):
                    nursery.start_soon(take, account)
                await wait_until(lambda: "elsewhere" in taken, "the grace to pass", 5)
                assert taken["mine"] - started < 0.3
                assert taken["elsewhere"] - started >= 0.5
                assert "busy" not in taken  # held back, whatever the grace
                held_back.clear()
                await wait_until(lambda: "busy" in taken, "busy to be taken once let go", 5)
                nursery.cancel_scope.cancel()
