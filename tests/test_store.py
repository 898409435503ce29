"""The store on both engines: order events, group commit, restart, cancellation, migrations."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Sequence

import asyncpg
import pytest
import trio
import trio.testing

from store import BasketRecord, Store, StoreError, StoreUnavailable, migrate, open_store


def order(order_id: str, status: str = "OPEN", **extra: object) -> dict[str, object]:
    return {"order_id": order_id, "status": status, "tag": f"t{order_id}", **extra}


async def all_events(store: Store, account: str) -> list[int]:
    seqs: list[int] = []
    while batch := await store.read_events(account, seqs[-1] if seqs else 0, limit=400):
        seqs.extend(e.seq for e in batch)
    return seqs


def _external_insert(url: str, account: str, seq: int) -> None:
    """Write an order event behind the store's back (another writer), from a worker thread."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        try:
            conn.execute("INSERT INTO order_events VALUES (?, ?, 'x', '{}', 0)", (account, seq))
        finally:
            conn.close()
        return

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "INSERT INTO order_events VALUES ($1, $2, 'x', '{}', 0)", account, seq
            )
        finally:
            await conn.close()

    asyncio.run(run())


async def test_append_read_and_latest_state(store: Store) -> None:
    with trio.fail_after(10):
        assert await store.last_seq("acc") == 0
        assert await store.append_events("acc", [order("1"), order("2")]) == [1, 2]
        assert await store.append_events("acc", [order("1", "COMPLETE", filled=75)]) == [3]
        assert await store.append_events("other", [order("9")]) == [1]
        assert await store.append_events("acc", []) == []

        events = await store.read_events("acc", 0)
        assert [(e.seq, e.order_id, e.payload["status"]) for e in events] == [
            (1, "1", "OPEN"),
            (2, "2", "OPEN"),
            (3, "1", "COMPLETE"),
        ]
        assert [e.seq for e in await store.read_events("acc", 1, limit=1)] == [2]
        assert await store.last_seq("acc") == 3
        latest = await store.load_orders("acc")
        assert latest == [order("2"), order("1", "COMPLETE", filled=75)]


async def test_payload_without_order_id_is_rejected_alone(store: Store) -> None:
    with trio.fail_after(10):
        with pytest.raises(StoreError):
            await store.append_events("acc", [order("1"), {"status": "OPEN"}])
        assert await store.append_events("acc", [order("1")]) == [1]


async def test_concurrent_appends_are_gap_free_and_ordered(store: Store) -> None:
    """20 tasks x 50 single-event appends over 3 accounts, all in flight together."""
    accounts = ["a", "b", "c"]
    got: dict[int, list[tuple[str, int]]] = {}

    async def writer(task: int) -> None:
        account = accounts[task % 3]
        mine = got.setdefault(task, [])
        for i in range(50):
            [seq] = await store.append_events(account, [order(f"{task}-{i}", n=i)])
            mine.append((account, seq))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for task in range(20):
                nursery.start_soon(writer, task)

        for account in accounts:
            n = sum(len(v) for t, v in got.items() if accounts[t % 3] == account)
            assert await all_events(store, account) == list(range(1, n + 1))
            assert await store.last_seq(account) == n
            # each writer's own events are in the order it appended them
            events = await store.read_events(account, 0, limit=n)
            for task, mine in got.items():
                if accounts[task % 3] == account:
                    seqs = [s for _, s in mine]
                    assert seqs == sorted(seqs)
                    assert [events[s - 1].payload["n"] for s in seqs] == list(range(50))
    # group commit merged concurrent callers into fewer transactions
    assert store._committer.rounds < 1000  # type: ignore[attr-defined]


async def test_multi_event_appends_get_contiguous_seqs(store: Store) -> None:
    results: list[list[int]] = []

    async def writer(task: int) -> None:
        results.append(await store.append_events("acc", [order(f"{task}-{i}") for i in range(7)]))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for task in range(30):
                nursery.start_soon(writer, task)
        for seqs in results:
            assert seqs == list(range(seqs[0], seqs[0] + 7))
        assert sorted(s for seqs in results for s in seqs) == list(range(1, 211))


async def test_lost_store_fails_all_callers_of_its_round_and_consumes_no_seq(
    store: Store,
) -> None:
    """The store gone mid-round (`StoreUnavailable`): the whole round fails, nothing retried
    (a refused round is split instead: tests/test_store_isolation.py)."""
    committer = store._committer  # type: ignore[attr-defined]
    real = committer._write_round
    gate = trio.Event()
    calls = 0

    async def flaky(requests: Sequence[tuple[str, object]], known: dict[str, int]) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            await gate.wait()  # hold round 1 so the others queue into round 2
        elif calls == 2:
            raise StoreUnavailable("injected")
        return await real(requests, known)

    committer._write_round = flaky
    outcomes: list[object] = []

    async def append(i: int) -> None:
        try:
            outcomes.append(await store.append_events("acc", [order(str(i))]))
        except StoreError as exc:
            outcomes.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(append, 0)
            while committer.pending() or calls == 0:
                await trio.lowlevel.checkpoint()
            for i in range(1, 6):
                nursery.start_soon(append, i)
            while committer.pending() < 5:
                await trio.lowlevel.checkpoint()
            gate.set()
        assert outcomes[0] == [1]
        assert all(isinstance(o, StoreUnavailable) for o in outcomes[1:]) and len(outcomes) == 6
        assert calls == 2  # not split: a retry could not succeed
        assert await store.append_events("acc", [order("x")]) == [2]
        assert await all_events(store, "acc") == [1, 2]


async def test_conflicting_writer_fails_round_then_seq_resyncs(store_url: str) -> None:
    with trio.fail_after(20):
        async with open_store(store_url) as store:
            assert await store.append_events("acc", [order("1")]) == [1]
            await trio.to_thread.run_sync(_external_insert, store_url, "acc", 2)
            with pytest.raises(StoreError):
                await store.append_events("acc", [order("2")])
            assert await store.append_events("acc", [order("2")]) == [3]


async def test_restart_sees_committed_events_and_continues_seq(store_url: str) -> None:
    with trio.fail_after(20):
        async with open_store(store_url) as first:
            await first.append_events("acc", [order("1"), order("2")])
            await first.append_events("b", [order("3")])
        async with open_store(store_url) as second:
            assert await second.last_seq("acc") == 2
            assert [o["order_id"] for o in await second.load_orders("acc")] == ["1", "2"]
            assert await second.append_events("acc", [order("1", "COMPLETE")]) == [3]
            assert await second.append_events("b", [order("4")]) == [2]


async def test_migrations_apply_to_empty_and_migrated_database(store_url: str) -> None:
    with trio.fail_after(20):
        assert await migrate(store_url) == [1, 2, 3, 4, 5, 6]
        assert await migrate(store_url) == []
        async with open_store(store_url) as store:
            assert await store.append_events("acc", [order("1")]) == [1]
        assert await migrate(store_url) == []


def _back_to_v1(url: str) -> None:
    """Undo migration 2 behind the store's back: a database as version 1 left it."""
    _undo(url, "DROP TABLE webhook_cursors", "DELETE FROM schema_migrations WHERE version = 2")


def _back_to_v2(url: str) -> None:
    """Undo migration 3 behind the store's back: a database as version 2 left it."""
    _undo(url, "DROP TABLE saved_baskets", "DELETE FROM schema_migrations WHERE version = 3")


def _undo(url: str, *statements: str) -> None:
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        try:
            for statement in statements:
                conn.execute(statement)
        finally:
            conn.close()
        return

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


async def test_a_version_1_database_gets_the_webhook_cursors(store_url: str) -> None:
    with trio.fail_after(20):
        async with open_store(store_url) as store:
            assert await store.append_events("acc", [order("1"), order("2")]) == [1, 2]
        await trio.to_thread.run_sync(_back_to_v1, store_url)
        assert await migrate(store_url) == [2]
        async with open_store(store_url) as store:
            assert await store.start_webhook_cursor("acc") == 2
            assert await store.read_events("acc", 0) != []  # v1 data untouched


async def test_a_version_2_database_gets_saved_baskets(store_url: str) -> None:
    with trio.fail_after(20):
        async with open_store(store_url) as store:
            assert await store.append_events("acc", [order("1")]) == [1]
        await trio.to_thread.run_sync(_back_to_v2, store_url)
        assert await migrate(store_url) == [3]
        async with open_store(store_url) as store:
            await store.save_basket(BasketRecord("acc", "x", [{"quantity": 75}]), max_baskets=1)
            assert [b.legs for b in await store.list_baskets("acc")] == [[{"quantity": 75}]]
            assert await store.read_events("acc", 0) != []  # v2 data untouched


async def test_cancel_mid_query_leaves_store_usable(store: Store) -> None:
    with trio.fail_after(20):
        await store.append_events("acc", [order("1")])
        started = time.monotonic()
        with trio.move_on_after(0.2) as scope:
            await store._sleep_in_db(30)  # type: ignore[attr-defined]
        assert scope.cancelled_caught
        assert time.monotonic() - started < 5
        if store.engine == "postgres":  # the server stopped the query too

            async def sleeping(conn: asyncpg.Connection) -> int:
                return await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                    " AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
                )

            assert await store._call(sleeping) == 0  # type: ignore[attr-defined]
        # more concurrent calls than the pool has connections: none is stuck
        async with trio.open_nursery() as nursery:
            for _ in range(15):
                nursery.start_soon(store.last_seq, "acc")
        assert await store.append_events("acc", [order("2")]) == [2]
        assert (await store.health())["ok"] is True


async def test_cancelled_appends_leave_no_gap(store: Store) -> None:
    rng = random.Random(7)
    confirmed: list[int] = []

    async def append_then_maybe_cancel(i: int) -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def append() -> None:
                    confirmed.extend(await store.append_events("acc", [order(str(i))]))

                nursery.start_soon(append)
                match i % 3:
                    case 0:  # cancel after a random number of scheduling points
                        for _ in range(rng.randrange(0, 40)):
                            await trio.lowlevel.checkpoint()
                        scope.cancel()
                    case 1:  # cancel at a random moment, possibly mid-commit
                        scope.deadline = trio.current_time() + rng.uniform(0, 0.005)
                    case _:  # never cancelled
                        pass

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(append_then_maybe_cancel, i)
        seqs = await all_events(store, "acc")
        assert seqs == list(range(1, len(seqs) + 1))
        assert set(confirmed) <= set(seqs)
        assert 0 < len(confirmed) < 200  # some appends were cancelled, some went through
        after = await store.append_events("acc", [order("last")])
        assert after == [len(seqs) + 1]


async def test_health_reports_engine(store: Store) -> None:
    with trio.fail_after(10):
        health = await store.health()
    assert health["engine"] == store.engine
    assert health["ok"] is True
    assert health["latency_ms"] >= 0
    assert health["pending_commits"] == 0


async def test_bad_urls_raise_store_errors(tmp_path: object) -> None:
    with trio.fail_after(20):
        with pytest.raises(StoreError):
            async with open_store("mysql://nope"):
                pass
        with pytest.raises(StoreUnavailable):
            async with open_store("postgresql://postgres@127.0.0.1:1/nope"):
                pass
        (tmp_path / "a-directory").mkdir()  # type: ignore[operator]
        with pytest.raises(StoreUnavailable):
            async with open_store(f"sqlite:///{tmp_path}/a-directory"):
                pass


async def test_sqlite_relative_path_creates_parent_dirs(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    with trio.fail_after(10):
        async with open_store("sqlite:///var/deep/orderdesk.db") as store:
            assert await store.append_events("acc", [order("1")]) == [1]
        assert (tmp_path / "var" / "deep" / "orderdesk.db").exists()  # type: ignore[operator]
        async with open_store("sqlite:///:memory:") as memory:
            assert await memory.append_events("acc", [order("1")]) == [1]


async def test_sqlite_cancelled_queued_job_is_dropped_at_once(sqlite_url: str) -> None:
    """A job still waiting for the busy worker thread is dropped on cancel, not waited for
    (while the job ahead of it runs on); it never runs later either."""
    ran: list[str] = []
    with trio.fail_after(20):
        async with open_store(sqlite_url) as store:
            blocker_done = trio.Event()

            async def blocker() -> None:
                await store._sleep_in_db(1)  # type: ignore[attr-defined]
                blocker_done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(blocker)
                await trio.testing.wait_all_tasks_blocked()  # the blocker's job is ahead
                with trio.move_on_after(0.05) as scope:
                    await store._run(lambda c: ran.append("queued"))  # type: ignore[attr-defined]
                assert scope.cancelled_caught
                assert not blocker_done.is_set(), "waited for the busy thread"
            assert blocker_done.is_set()
            assert await store.last_seq("acc") == 0  # the worker goes on serving
    assert ran == []


async def test_store_errors_after_close(sqlite_url: str) -> None:
    with trio.fail_after(10):
        async with open_store(sqlite_url) as store:
            pass
        with pytest.raises(StoreUnavailable):
            await store.append_events("acc", [order("1")])
        with pytest.raises(StoreUnavailable):
            await store.last_seq("acc")
